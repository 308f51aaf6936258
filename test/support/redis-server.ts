import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { freePort } from './helpers.js'

/** How long a redis-server may take to start before the test fails instead of hanging. */
const startTimeoutMs = 10_000

/** A redis-server this process started on 127.0.0.1, with no persistence: a restart loses everything. */
export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Kills the server (SIGKILL, as a crash) and starts a new one on the same port. */
  restart (): Promise<void>
  stop (): Promise<void>
}

/** Why Redis tests cannot run here, or null when they can. */
export function redisUnavailable (): string | null {
  if (process.env.REDIS_URL !== undefined || redisServerPath() !== null) return null
  const hint = process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')
    ? 'run `apt-get update && apt-get install -y redis-server` (as .ci/run does)'
    : 'install redis-server (Debian/Ubuntu: `apt-get install redis-server`)'
  return `!!! redis-server is not installed and REDIS_URL is not set: the Redis broker tests are skipped; ${hint}`
}

export function redisServerPath (): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'redis-server')
    if (dir !== '' && existsSync(candidate)) return candidate
  }
  return null
}

/**
 * Starts redis-server and resolves once it logs that it accepts connections (or rejects if it exits
 * first); `extra` arguments follow the port, address and no-persistence ones.
 */
export async function spawnServer (binary: string, port: number, extra: readonly string[] = [], cwd?: string): Promise<ChildProcess> {
  const child = spawn(binary, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'notice', ...extra
  ], { stdio: ['ignore', 'pipe', 'pipe'], cwd })
  let output = ''
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`redis-server did not start within ${startTimeoutMs} ms:\n${output}`)) }, startTimeoutMs)
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${String(code)} before it was ready:\n${output}`))
    })
  })
  try {
    await ready
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
  return child
}

export async function stopServer (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  await exited
}

/** Starts a redis-server of this test's own (on a free port) and stops it on teardown. */
export async function startRedisServer (t: Test): Promise<RedisServer> {
  const binary = redisServerPath()
  if (binary === null) throw new Error('redis-server is not installed')
  const port = await freePort()
  let child = await spawnServer(binary, port)
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async restart () {
      await stopServer(child, 'SIGKILL')
      child = await spawnServer(binary, port)
    },
    async stop () {
      await stopServer(child, 'SIGTERM')
    }
  }
  t.teardown(() => server.stop())
  await ping(server.url)
  return server
}

/** The Redis to test against: REDIS_URL if set, else a redis-server of our own for the file. */
export async function redisUrl (t: Test): Promise<string> {
  if (process.env.REDIS_URL !== undefined) return process.env.REDIS_URL
  return (await startRedisServer(t)).url
}

async function ping (url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
  try {
    await client.connect()
    if (await client.ping() !== 'PONG') throw new Error(`${url} did not answer PING`)
  } finally {
    client.disconnect()
  }
}
