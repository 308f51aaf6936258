import { spawn } from 'node:child_process'
import t from 'tap'
import { within } from './support/helpers.js'

t.test('a test during which the process sees an uncaught exception or an unhandled rejection fails', async (t) => {
  const child = spawn(process.execPath, [...process.execArgv, new URL('./support/fixtures/process-faults.ts', import.meta.url).pathname], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const [code] = await within(60_000, 'the fixture ends', new Promise<[number | null]>((resolve) => { child.on('close', (c) => { resolve([c]) }) }))
  t.match(out, /not ok 1 - the process saw an uncaughtException[^\n]*\n[\s\S]*thrown in a timer/, 'the throw fails the test it happened in')
  t.match(out, /not ok 1 - the process saw an unhandledRejection[^\n]*\n[\s\S]*rejected and left/, 'the rejection fails the test it happened in')
  t.match(out, /ok 3 - a clean test/, 'a clean test passes')
  t.match(err, /process faults outside any test:\nuncaughtException: Error: thrown between tests/, 'a fault between tests is reported')
  t.equal(code, 1, 'and fails the file')
})
