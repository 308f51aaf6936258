// Helper processes of the benchmarks that need Redis (broadcast, scale): a throwaway redis-server,
// a free port, and the CPU time of a process that has no /cpu endpoint.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import type { Harness } from './harness.js'

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  return port
}

/** Whether `command` is on the PATH. */
export function which (command: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => existsSync(`${dir}/${command}`))
}

/** A throwaway redis-server: no persistence, loopback only, killed with the driver. */
export async function startRedis (harness: Harness): Promise<{ url: string, child: ChildProcess }> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
  harness.track(child)
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  await harness.withTimeout(new Promise<void>((resolve) => {
    lines.on('line', (line) => { if (line.includes('Ready to accept connections')) resolve() })
  }), 'starting redis-server')
  return { url: `redis://127.0.0.1:${port}`, child }
}

/** CPU time a process has used, from /proc (Linux), in µs; null where /proc is missing. */
export function procCpu (pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    // utime and stime, fields 14 and 15 of stat (11 and 12 after the command name), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch {
    return null
  }
}
