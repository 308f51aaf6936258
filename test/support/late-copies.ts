import { randomUUID } from 'node:crypto'
import type { Test } from 'tap'
import type { Broker } from '../../lib/hub/broker.js'
import { roomKeys } from '../../lib/hub/redis/keys.js'
import { contractHandler } from '../../lib/index.js'
import { clusterChat } from './fixtures/cluster-contract.js'
import { build, client } from './helpers.js'
import { join, json } from './room-client.js'

export interface LateCopiesSetup {
  /** The instance's broker (on the Redis under test). */
  broker: () => Broker
  /** A broker on the same keys whose pub/sub the instance's broker never hears (the other pub/sub mode): its messages reach the stream only. */
  silent: () => Broker
  /** Publishes a raw payload on the channel the instance's broker listens to. */
  rawPublish: (channel: string, payload: string) => Promise<void>
  keyPrefix: string
}

/**
 * Late copies, forced: messages reach the stream without a pub/sub wake-up (so the instance does
 * not know of them), a member recovers them from the stream, and only then do copies of them
 * arrive on pub/sub, as copies still in flight would on a cluster. The member that recovered them
 * must not get them again; a member that joined before them gets each once.
 */
export async function lateCopies (t: Test, setup: LateCopiesSetup): Promise<void> {
  const room = `late-${randomUUID()}`
  const instance = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(clusterChat, {
      async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text }) },
      async dm () {}
    }, { rooms: { authorize: () => true } }))
  }, { broker: setup.broker() })
  const silent = setup.silent()
  silent.attach({ message () {}, lost () {} })
  const early = await client(t, `${instance.url}/chat`)
  const joined = (await join(early, room)).data as { epoch: string, offset: number }
  const missed = []
  for (let n = 1; n <= 5; n++) missed.push(await silent.publish(room, JSON.stringify({ type: 'message', data: { text: `m${n}` } })))
  const late = await client(t, `${instance.url}/chat`)
  const reply = (await join(late, room, { epoch: joined.epoch, offset: joined.offset })).data as { recovered: boolean, offset: number }
  t.match(reply, { recovered: true, offset: 5 }, 'the member recovers the five messages from the stream')
  for (let n = 1; n <= 5; n++) t.match(await json(late), { data: { text: `m${n}` }, offset: n }, `m${n} replayed`)
  // The copies arrive now, after the recovery: the instance delivers them in order to the early member.
  const channel = roomKeys(setup.keyPrefix, room).channel
  for (const message of missed) await setup.rawPublish(channel, `${message.offset}|${message.time}|${message.epoch}|1||${message.text}`)
  for (let n = 1; n <= 5; n++) t.match(await json(early), { data: { text: `m${n}` }, offset: n }, `the early member gets m${n} once`)
  early.ws.send(JSON.stringify({ type: 'say', data: { room, text: 'm6' } }))
  t.match(await json(early), { data: { text: 'm6' }, offset: 6 })
  t.match(await json(late), { data: { text: 'm6' }, offset: 6 }, 'the recovered member gets m6 next: none of the late copies')
}
