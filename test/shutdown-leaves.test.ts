import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { contractHandler, defineContract, MemoryBroker } from '../lib/index.js'
import { RealtimeClient } from '../lib/client/index.js'
import { build, deferred } from './support/helpers.js'

// Shutdown closes the broker only after the closed connections have left their rooms, so their
// leave notices and presence removal still go out (on Redis they need the broker), within closeTimeout.

const chat = defineContract({ client: { say: Type.String() }, server: {} })

/** A memory broker that records the leave notices it publishes and when it is closed. */
function recordingBroker (): { broker: MemoryBroker, events: string[] } {
  const events: string[] = []
  const broker = new MemoryBroker()
  const publish = broker.publish.bind(broker)
  broker.publish = async (room, text, options) => {
    if (text.includes('"event":"leave"')) events.push(`leave ${room}`)
    return await publish(room, text, options)
  }
  const close = broker.close.bind(broker)
  broker.close = async () => {
    events.push('broker closed')
    await close()
  }
  return { broker, events }
}

async function joinedClient (t: Test, url: string): Promise<RealtimeClient<typeof chat>> {
  const client = new RealtimeClient<typeof chat>({ url: `${url}/chat`, WebSocket, backoff: { baseMs: 20, maxRetries: 1 } })
  t.teardown(() => { client.close() })
  await client.join('lobby')
  return client
}

/** An app whose chat route has rooms with notices and the given close handler, on a recording broker, with a client in the lobby. */
async function closingApp (t: Test, close: () => Promise<void>, closeTimeout: number): Promise<{ app: FastifyInstance, events: string[] }> {
  const { broker, events } = recordingBroker()
  const { app, url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, { say () {}, close }, { rooms: { authorize: () => true, notices: true } }))
  }, { broker, closeTimeout })
  await joinedClient(t, url)
  return { app, events }
}

t.test('app.close() waits for a closing connection to leave its rooms before it closes the broker', async (t) => {
  const closing = deferred()
  // A close handler still busy when preClose has seen every connection closed: the room is left
  // after it, and before, the broker was already closed by then.
  const { app, events } = await closingApp(t, async () => {
    closing.resolve()
    await new Promise((resolve) => setTimeout(resolve, 100))
  }, 5000)
  const closed = app.close()
  await closing.promise
  await closed
  t.same(events, ['leave lobby', 'broker closed'], 'the leave notice went out, then the broker closed')
})

t.test('a connection that never finishes leaving holds app.close() for closeTimeout at most', async (t) => {
  const closing = deferred()
  // Never settles: the session never reaches its rooms' leave.
  const { app, events } = await closingApp(t, async () => {
    closing.resolve()
    await new Promise(() => {})
  }, 150)
  const started = Date.now()
  await app.close()
  await closing.promise
  t.same(events, ['broker closed'], 'the broker closed without the leave')
  t.ok(Date.now() - started < 5000, 'app.close() did not hang')
})
