import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { contractHandler } from '../lib/index.js'
import { roomKeys } from '../lib/hub/redis/keys.js'
import { build, client, type Client } from './support/helpers.js'
import { clusterChat } from './support/fixtures/cluster-contract.js'
import { redisUnavailable, redisUrl } from './support/redis-server.js'
import { join, nextMessage } from './support/room-client.js'
import './support/process-guard.js'

// A room's history going backwards in one epoch, as after a Redis failover to a replica that
// lacked the last writes: forced here on one Redis by rolling the room's stream and counter back
// behind the brokers' backs (what the promoted replica would hold), then each way of finding it.
const unavailable = redisUnavailable()
if (unavailable !== null) t.comment(unavailable)

t.test('a rewound room history', { skip: unavailable ?? false }, async (t) => {
  const { Redis } = await import('ioredis')
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const url = await redisUrl(t)
  const redis = new Redis(url)
  t.teardown(() => { redis.disconnect() })

  async function instances (t: Test, count: number) {
    const keyPrefix = `rewind-${randomUUID()}:`
    const built = []
    for (let i = 0; i < count; i++) {
      built.push(await build(t, (app) => {
        app.get('/chat', { realtime: true }, contractHandler(clusterChat, {
          async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text }) },
          async dm () {}
        }, { rooms: { authorize: () => true } }))
      }, { broker: new RedisBroker({ client: url, keyPrefix }) }))
    }
    return { built, keyPrefix }
  }

  /** What a promoted replica that missed the last writes holds: the stream and counter at `offset`. */
  async function rollBack (keyPrefix: string, room: string, offset: number): Promise<void> {
    const keys = roomKeys(keyPrefix, room)
    const entries = await redis.xrange(keys.stream, '-', '+')
    for (const [id, fields] of entries) if (Number(fields[1]) > offset) await redis.xdel(keys.stream, id)
    await redis.hset(keys.meta, 'offset', offset)
  }

  /** Members in `room` on each instance, and `count` messages they all received; returns the last one. */
  async function room (t: Test, urls: string[], name: string, count: number) {
    const members: Client[] = []
    for (const at of urls) {
      const member = await client(t, `${at}/chat`)
      await join(member, name)
      members.push(member)
    }
    let last: Record<string, unknown> = {}
    for (let i = 1; i <= count; i++) {
      members[0]!.ws.send(JSON.stringify({ type: 'say', data: { room: name, text: `old ${i}` } }))
      for (const member of members) last = await nextMessage(member)
    }
    return { members, last }
  }

  t.test('a live message at an offset seen before: every member is told $lost, and no recovery reaches across', async (t) => {
    const { built: [one, two], keyPrefix } = await instances(t, 2)
    const { members, last } = await room(t, [one!.url, two!.url], 'r', 5)
    await rollBack(keyPrefix, 'r', 3)
    // The old 4 and 5 are gone; a new message takes offset 4 again, in the same epoch.
    members[0]!.ws.send(JSON.stringify({ type: 'say', data: { room: 'r', text: 'new 4' } }))
    for (const member of members) {
      const lost = await nextMessage(member)
      t.match(lost, { type: '$lost', data: { room: 'r' } }, 'told, and not given the new 4 as if it followed the old 5')
      t.not((lost.data as { epoch: string }).epoch, last.epoch, 'at a new epoch')
    }
    const position = await two!.app.realtime.history('r')
    t.not(position.position.epoch, last.epoch, 'the room has a new epoch')
    // Without the new epoch this client (it saw the old 4) would get recovered: true and never the new 4.
    const again = await client(t, `${two!.url}/chat`)
    t.match((await join(again, 'r', { epoch: last.epoch, offset: 4 })).data, { recovered: false })
  })

  t.test('a catch-up (a reconnect, a failover) finding the room below what was delivered', async (t) => {
    const { built: [one, two], keyPrefix } = await instances(t, 2)
    const { members, last } = await room(t, [one!.url, two!.url], 'r', 5)
    await rollBack(keyPrefix, 'r', 3)
    // Every subscriber connection drops: each instance resubscribes and catches up from its stream.
    await redis.client('KILL', 'TYPE', 'pubsub')
    for (const member of members) {
      const lost = await nextMessage(member)
      t.match(lost, { type: '$lost', data: { room: 'r', offset: 0 } })
      t.not((lost.data as { epoch: string }).epoch, last.epoch)
    }
    members[1]!.ws.send(JSON.stringify({ type: 'say', data: { room: 'r', text: 'after' } }))
    for (const member of members) t.match(await nextMessage(member), { data: { text: 'after' }, offset: 1 }, 'delivery goes on in the new epoch')
  })

  t.test('a recovery from beyond the position, on an instance that saw nothing of the room', async (t) => {
    const { built: [one, two], keyPrefix } = await instances(t, 2)
    const { members, last } = await room(t, [one!.url], 'r', 5)
    await rollBack(keyPrefix, 'r', 3)
    const again = await client(t, `${two!.url}/chat`)
    const reply = await join(again, 'r', { epoch: last.epoch, offset: 5 })
    t.match(reply.data, { recovered: false, offset: 0 })
    t.not((reply.data as { epoch: string }).epoch, last.epoch, 'the recovering client gets the new epoch')
    t.match(await nextMessage(members[0]!), { type: '$lost', data: { room: 'r', epoch: (reply.data as { epoch: string }).epoch } }, 'the members elsewhere are told')
    const later = await client(t, `${two!.url}/chat`)
    t.match((await join(later, 'r', { epoch: last.epoch, offset: 4 })).data, { recovered: false }, 'nor does a later one from the lost range')
  })

  t.test('claims restart a room at most once a minute; a restart leaves a room already past the epoch', async (t) => {
    const keyPrefix = `rewind-${randomUUID()}:`
    const broker = new RedisBroker({ client: url, keyPrefix })
    t.teardown(() => broker.close())
    await broker.publish('r', '{"type":"m","data":1}')
    const first = await broker.position('r')
    const second = await broker.rewound('r', first)
    t.not(second.epoch, first.epoch)
    t.same(await broker.rewound('r', first), second, 'the old epoch is gone: the room stays as it is')
    t.same(await broker.rewound('r', second), second, 'a claim right after a restart changes nothing')
    await redis.del(roomKeys(keyPrefix, 'r').meta)
    const fresh = await broker.rewound('r', second)
    t.not(fresh.epoch, second.epoch, 'a room whose keys are gone gets an epoch of its own')
    t.equal(fresh.offset, 0)
  })

  t.test('the residual window: a rewind no instance saw, whose offsets new messages passed, is not found', async (t) => {
    const keyPrefix = `rewind-${randomUUID()}:`
    const broker = new RedisBroker({ client: url, keyPrefix })
    t.teardown(() => broker.close())
    let epoch = ''
    for (let i = 1; i <= 5; i++) epoch = (await broker.publish('r', `{"type":"m","data":"old ${i}"}`)).epoch
    await rollBack(keyPrefix, 'r', 3)
    for (let i = 4; i <= 5; i++) await broker.publish('r', `{"type":"m","data":"new ${i}"}`)
    const { recover } = await import('../lib/hub/recovery.js')
    const recovery = await recover(broker, 'r', epoch, 4)
    t.match(recovery, { recovered: true, messages: [{ offset: 5 }] }, 'a client that saw the old 4 misses the new 4 (see docs/operations.md)')
  })
})
