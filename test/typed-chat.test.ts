import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import t from 'tap'
import './support/process-guard.js'
import { defineContract } from '../lib/index.js'

// The typed chat of example/typed-chat/ is written as an app that installed the package; its own
// tsconfig maps the package's name to lib/, so it is checked on its own (the main tsconfig leaves it out).

t.test('the typed chat type-checks against the package, with no cast', async (t) => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const child = spawn(process.execPath, [tsc, '--noEmit', '-p', 'example/typed-chat/tsconfig.json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(child, 'exit') as [number]
  t.equal(code, 0, output)
})

t.test('the package it checks against is this one', async (t) => {
  // Its tsconfig maps 'fastify-realtime' to lib/index.ts: what this file loads.
  t.type(defineContract, 'function')
})
