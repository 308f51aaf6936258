import type { IncomingMessage } from 'node:http'
import { WebSocketServer, type ServerOptions } from 'ws'
import type { RouteSettings } from '../options/route.js'
import { RealtimeSocket } from './socket.js'
import { backstopCloseTimeout } from './ws-internals.js'
import { kProtocol } from '../symbols.js'

// ws calls this only when the client offered subprotocols; the route's hook already chose one.
function selectProtocol (_offered: Set<string>, request: IncomingMessage): string | false {
  return (request as IncomingMessage & { [kProtocol]?: string })[kProtocol] ?? false
}

/** ws's options for a route's settings; closeTimeout is newer than @types/ws. */
export type WsServerOptions = Omit<ServerOptions, 'WebSocket'> & { WebSocket: typeof RealtimeSocket, closeTimeout: number }

/**
 * The ws server options that carry a route's settings, all public ws options: ws keeps them per
 * server and reads them at each upgrade (maxPayload for frames and for inflated messages alike).
 */
export function wsServerOptions (settings: RouteSettings): WsServerOptions {
  return {
    WebSocket: RealtimeSocket,
    noServer: true,
    clientTracking: false,
    handleProtocols: selectProtocol,
    maxPayload: settings.maxMsgSize,
    // ws pongs as soon as a ping is parsed; with autoPing off the handler answers instead.
    autoPong: settings.autoPing,
    // Our own deadline enforces closeTimeout with aiohttp semantics; ws's timer is only a backstop.
    closeTimeout: backstopCloseTimeout(settings.closeTimeout),
    // The route's hook has already chosen the parameters (handshake/compression.ts); ws only echoes
    // them. Every send says whether to compress, so ws's own threshold stays out of the way.
    perMessageDeflate: settings.compress === null
      ? false
      : { threshold: 0, zlibDeflateOptions: { level: settings.compress.level, memLevel: settings.compress.memLevel } }
  }
}

/** What tells two routes' ws servers apart (what wsServerOptions reads): routes that agree on these share one. */
function keyOf (settings: RouteSettings): string {
  const { compress } = settings
  return `${settings.maxMsgSize}|${settings.autoPing}|${settings.closeTimeout}|${compress === null ? 'off' : `${compress.level}/${compress.memLevel}`}`
}

/**
 * One ws server (`noServer`) per distinct set of ws-level settings, shared by the routes that
 * agree on them. A server holds only its options: connections cost the same on any of them.
 */
export class WsServers {
  private readonly servers = new Map<string, WebSocketServer>()

  /** The server for a route's settings, made on first use. */
  serverFor (settings: RouteSettings): WebSocketServer {
    const key = keyOf(settings)
    let server = this.servers.get(key)
    if (server === undefined) {
      server = new WebSocketServer(wsServerOptions(settings) as ServerOptions)
      this.servers.set(key, server)
    }
    return server
  }

  /** Whether two routes' settings run on servers with the same options. */
  static sameServer (a: RouteSettings, b: RouteSettings): boolean {
    return keyOf(a) === keyOf(b)
  }

  /** Closes every server: later upgrades are refused with 503 by ws. */
  async close (): Promise<void> {
    await Promise.all([...this.servers.values()].map(async (server) => {
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }))
  }
}
