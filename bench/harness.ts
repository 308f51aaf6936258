// What the side-by-side benchmarks share: child processes that die with the driver, a global time
// limit, bounded waits, servers started from a script that prints {"port":N}, and medians.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { arch, availableParallelism, cpus, platform } from 'node:os'
import { createInterface } from 'node:readline'

export interface Server {
  readonly port: number
  readonly child: ChildProcess
}

export interface Harness {
  /** Rejects if `promise` takes over `ms` (the harness's wait by default). */
  withTimeout<T>(promise: Promise<T>, what: string, ms?: number): Promise<T>
  /** Kills `child` with the driver (global time limit or exit). */
  track (child: ChildProcess): void
  /** Starts `script args` with Node and `nodeArgs`, a .ts script through this process's TypeScript loader; resolves once it prints its port. */
  startServer (script: string, args: string[], nodeArgs?: string[]): Promise<Server>
  /** Starts any program that prints `{"port":N}` as its first stdout line (a Python server), pinned and tracked like the Node ones. */
  startCommand (command: string[], what: string): Promise<Server>
  stopServer (server: Server): Promise<void>
  /** CPU time the server has used so far (user + system, µs), from its GET /cpu. */
  serverCpu (port: number): Promise<number>
  /** How the processes were placed, for the report. */
  readonly placement: string
  /** Ends the global time limit; call when the run is over. */
  done (): void
}

/**
 * The method: the server pinned to one core, the load on the other, so neither steals the
 * other's core and the server's CPU figure is its own. BENCH_PIN=0 turns it off; it is off anyway
 * where `taskset` is missing or there is only one core.
 */
function pinning (): { server: string[], pinDriver: () => void } {
  const off = { server: [], pinDriver: () => {} }
  if (process.env.BENCH_PIN === '0' || availableParallelism() < 2) return off
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' })
  } catch {
    return off
  }
  return {
    server: ['taskset', '-c', '0'],
    // -a: every thread of the driver (libuv's pool too), not only the main one.
    pinDriver: () => { execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' }) }
  }
}

export function createHarness (waitMs: number, globalTimeoutMs: number): Harness {
  const pin = pinning()
  pin.pinDriver()
  const children = new Set<ChildProcess>()
  const stopAll = (): void => { for (const child of children) child.kill('SIGKILL') }
  const globalTimer = setTimeout(() => {
    console.error(`bench: gave up after ${globalTimeoutMs / 1000} s`)
    stopAll()
    process.exit(1)
  }, globalTimeoutMs)
  process.on('exit', stopAll)

  function withTimeout<T> (promise: Promise<T>, what: string, ms = waitMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`bench: ${what} took over ${ms} ms`)) }, ms)
    })
    return Promise.race([promise, timeout]).finally(() => { clearTimeout(timer) })
  }

  function track (child: ChildProcess): void {
    children.add(child)
    child.once('exit', () => children.delete(child))
  }

  async function startCommand (command: string[], what: string): Promise<Server> {
    const pinned = [...pin.server, ...command]
    const child = spawn(pinned[0] as string, pinned.slice(1), {
      // The driver was type-checked already; the servers only need transpiling, which starts faster.
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    track(child)
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    // A server that exits first (prlimit refused a file limit, a crash at start) fails the start at once.
    const exited = once(child, 'exit').then(([code]) => { throw new Error(`bench: ${what} exited with ${String(code)} before it listened`) })
    exited.catch(() => {})
    const [line] = await withTimeout(Promise.race([once(lines, 'line') as Promise<[string]>, exited]), `starting ${what}`)
    lines.close()
    return { port: (JSON.parse(line) as { port: number }).port, child }
  }

  return {
    withTimeout,
    track,
    placement: pin.server.length > 0 ? 'server pinned to core 0, load generator to core 1 (taskset)' : 'not pinned',
    async startServer (script, args, nodeArgs = []) {
      // BENCH_SERVER_ARGS: extra Node options for the servers only, e.g. `--cpu-prof` to profile them.
      const extra = process.env.BENCH_SERVER_ARGS?.split(' ').filter((arg) => arg !== '') ?? []
      const loader = script.endsWith('.ts') ? process.execArgv : []
      return await startCommand([process.execPath, ...nodeArgs, ...extra, ...loader, script, ...args], args.join(' '))
    },
    startCommand,
    async stopServer (server) {
      if (server.child.exitCode !== null) return
      const exited = once(server.child, 'exit')
      server.child.kill('SIGTERM')
      await withTimeout(exited, 'stopping a server').catch(() => { server.child.kill('SIGKILL') })
    },
    async serverCpu (port) {
      const response = await fetch(`http://127.0.0.1:${port}/cpu`)
      const { user, system } = await response.json() as { user: number, system: number }
      return user + system
    },
    done () {
      clearTimeout(globalTimer)
    }
  }
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** A figure for a table: thousands separated from 1000 up, one decimal below 100. */
export const num = (value: number): string => value >= 1000 ? Math.round(value).toLocaleString('en-US') : value >= 100 ? value.toFixed(0) : value.toFixed(1)
export const ratio = (value: number): string => value.toFixed(2)
/** Median (min–max) of a list, each formatted by `format`. */
export const spread = (values: number[], format: (value: number) => string): string =>
  `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`

/** Node, OS and CPU, for a report's first line. */
export function machine (): string {
  return `Node ${process.version}, ${platform()} ${arch()}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`
}

/** Which lib/ a run measured: the commit, and a digest of any uncommitted change to it. */
export function gitState (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const diff = execFileSync('git', ['diff', 'HEAD', '--', 'lib'], { encoding: 'utf8' })
    if (diff === '') return `lib/ at ${head}, no uncommitted changes`
    const files = execFileSync('git', ['diff', 'HEAD', '--name-only', '--', 'lib'], { encoding: 'utf8' }).trim().split('\n').join(', ')
    return `lib/ at ${head} plus uncommitted changes to ${files} (diff sha1 ${createHash('sha1').update(diff).digest('hex').slice(0, 10)})`
  } catch {
    return 'lib/ version unknown (no git)'
  }
}
