"""The aiohttp server of bench/echo.ts and bench/idle.ts, in a child process of its own.

Run by /usr/bin/python3 with Debian's python3-aiohttp (and python3-uvloop when it is installed):

    python3 bench/aiohttp-server.py

It does what bench/echo-server.ts does in Node: a `web.WebSocketResponse` on `/` answers
`{"type": "echo", "data": ..., "id": ...}` with `{"type": "echo:reply", "data": <the same data>,
"id": <the same id>}`, through json.loads and json.dumps. It listens on 127.0.0.1 on a free port,
prints `{"port":N}` as its first stdout line, and exits with 0 on SIGTERM. HTTP endpoints:

    GET /cpu    user and system CPU time of this process so far, in µs (as Node's process.cpuUsage)
    GET /mem    RSS in bytes after two full collections; heapUsed is null (Python has no such figure)
    GET /info   the versions and the event loop that runs, for the report
"""
import asyncio
import gc
import json
import os
import platform
import resource
import signal
import socket
import sys
import weakref

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

try:
    import uvloop
except ImportError:
    uvloop = None

PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')
# As JSON.stringify writes it: no spaces after separators, so every variant sends the same bytes.
dumps = json.JSONEncoder(separators=(',', ':')).encode


async def echo(request):
    # compress=False: no permessage-deflate, as for the Node variants. heartbeat, autoping and the
    # timeouts stay at aiohttp's defaults.
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    request.app['websockets'].add(ws)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        message = json.loads(msg.data)
        if message.get('type') == 'echo':
            await ws.send_str(dumps({'type': 'echo:reply', 'data': message.get('data'), 'id': message.get('id')}))
        else:
            error = {'code': 'UNKNOWN_TYPE', 'message': f"unknown type {message.get('type')}"}
            await ws.send_str(dumps({'type': 'error', 'data': error, 'id': message.get('id')}))
    return ws


async def cpu(_request):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return web.json_response({'user': round(usage.ru_utime * 1e6), 'system': round(usage.ru_stime * 1e6)})


async def mem(_request):
    gc.collect()
    gc.collect()
    with open('/proc/self/statm') as statm:
        resident = int(statm.read().split()[1])
    return web.json_response({'rss': resident * PAGE_SIZE, 'heapUsed': None, 'gc': True})


async def info(_request):
    return web.json_response({
        'python': platform.python_version(),
        'aiohttp': aiohttp.__version__,
        'loop': 'uvloop ' + uvloop.__version__ if uvloop is not None else 'asyncio (uvloop not installed)',
    })


async def close_websockets(app):
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY) for ws in set(app['websockets'])))


async def main():
    app = web.Application()
    app['websockets'] = weakref.WeakSet()
    app.on_shutdown.append(close_websockets)
    app.add_routes([web.get('/', echo), web.get('/cpu', cpu), web.get('/mem', mem), web.get('/info', info)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    site = web.SockSite(runner, sock, backlog=4096, shutdown_timeout=5.0)
    await site.start()
    print(json.dumps({'port': sock.getsockname()[1]}), flush=True)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == '__main__':
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
    sys.exit(0)
