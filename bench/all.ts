/**
 * Every side-by-side benchmark, one after another: serialize, echo, broadcast, idle, heartbeat, redis-cluster. Run with
 * `npm run bench`; see bench/README.md. Each runs in a Node process of its own, as its own
 * `npm run bench:<name>` would run it (same loader, same environment, so the ECHO_*, IDLE_* and
 * BENCH_* variables apply), with its report on stdout. BENCH_ONLY picks some of them. A benchmark that fails does not stop the
 * others; the run exits 1 if any failed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'

/** BENCH_ONLY=echo,idle runs only those, in this order. */
const only = process.env.BENCH_ONLY?.split(',')
const BENCHES = ['serialize', 'echo', 'broadcast', 'idle', 'heartbeat', 'redis-cluster'].filter((name) => only === undefined || only.includes(name))
/** Each benchmark gives up by itself after 10 minutes; this is the backstop if one hangs anyway. */
const EACH_TIMEOUT_MS = 15 * 60_000

/** The benchmark running now, in a process group of its own: killing the group ends its servers too. */
let running: ChildProcess | null = null
const killRunning = (): void => {
  if (running?.pid !== undefined && running.exitCode === null && running.signalCode === null) process.kill(-running.pid, 'SIGKILL')
}
// Ctrl-C reaches only the foreground group, which the benchmark's own group is not.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killRunning()
    process.exit(130)
  })
}

const outcomes: string[] = []
let failed = 0
for (const name of BENCHES) {
  const script = new URL(`${name}.ts`, import.meta.url).pathname
  process.stderr.write(`\n==== bench:${name} ====\n`)
  console.log(`\n## bench:${name}\n`)
  const start = process.hrtime.bigint()
  const child = spawn(process.execPath, [...process.execArgv, script], { stdio: 'inherit', detached: true })
  running = child
  const timer = setTimeout(killRunning, EACH_TIMEOUT_MS)
  const [code, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  running = null
  const seconds = Math.round(Number(process.hrtime.bigint() - start) / 1e9)
  if (code !== 0) failed++
  outcomes.push(`bench:${name} ${code === 0 ? 'ok' : `failed (${signal ?? `exit ${String(code)}`})`} in ${seconds} s`)
}
process.stderr.write(`\n${outcomes.join('; ')}\n`)
process.exitCode = failed === 0 ? 0 : 1
