import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { contractHandler } from '../lib/index.js'
import { build, client } from './support/helpers.js'
import { lateCopies } from './support/late-copies.js'
import { clusterChat } from './support/fixtures/cluster-contract.js'
import { redisServerPath, redisUnavailable, redisUrl, startRedisServer } from './support/redis-server.js'
import { join, nextMessage } from './support/room-client.js'

// Several Fastify instances on one Redis, as behind a load balancer. Skipped loudly without Redis.
const unavailable = redisUnavailable()
if (unavailable !== null) t.comment(unavailable)

t.test('a cluster of instances on one Redis', { skip: unavailable ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const url = await redisUrl(t)

  async function instances (t: Test, count: number, redis = url, presenceTtlMs = 60_000) {
    const keyPrefix = `cluster-${randomUUID()}:`
    const built = []
    for (let i = 0; i < count; i++) {
      built.push(await build(t, (app) => {
        app.get('/chat', { realtime: true }, contractHandler(clusterChat, {
          async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text }) },
          async dm ({ user, text }, ctx) { await ctx.rooms.toUser(user, 'message', { text }) }
        }, { rooms: { authorize: () => true }, userId: (request) => (request.query as { user?: string }).user ?? null }))
      }, { broker: new RedisBroker({ client: redis, keyPrefix, presenceTtlMs }) }))
    }
    return { built, keyPrefix }
  }

  t.test('a message sent on one instance reaches the members on all of them', async (t) => {
    const { built: [one, two, three] } = await instances(t, 3)
    const members = [await client(t, `${one!.url}/chat?user=a`), await client(t, `${two!.url}/chat?user=b`), await client(t, `${three!.url}/chat?user=c`)]
    for (const member of members) await join(member, 'lobby')
    members[1]!.ws.send(JSON.stringify({ type: 'say', data: { room: 'lobby', text: 'from two' } }))
    const got = []
    for (const member of members) got.push(await nextMessage(member))
    t.same(new Set(got.map((message) => message.offset)), new Set([1]), 'one offset, the same everywhere')
    for (const message of got) t.match(message, { type: 'message', data: { text: 'from two' }, room: 'lobby' })
    t.same(new Set(got.map((message) => message.epoch)).size, 1)
  })

  t.test('presence lists the members of every instance, and toUser reaches a user anywhere', async (t) => {
    const { built: [one, two, three] } = await instances(t, 3)
    const a1 = await client(t, `${one!.url}/chat?user=ada`)
    const b2 = await client(t, `${two!.url}/chat?user=bob`)
    const a3 = await client(t, `${three!.url}/chat?user=ada`)
    for (const member of [a1, b2, a3]) await join(member, 'lobby', { meta: { at: member === b2 ? 'two' : 'elsewhere' } })
    t.equal(await two!.app.realtime.presenceCount('lobby'), 3)
    const users = (await one!.app.realtime.presence('lobby')).map((entry) => entry.userId).sort()
    t.same(users, ['ada', 'ada', 'bob'])
    b2.ws.send(JSON.stringify({ type: 'dm', data: { user: 'ada', text: 'hi ada' } }))
    t.match(await nextMessage(a1), { data: { text: 'hi ada' } })
    t.match(await nextMessage(a3), { data: { text: 'hi ada' } })
  })

  t.test('history and recovery work across instances', async (t) => {
    const { built: [one, two, three] } = await instances(t, 3)
    const a = await client(t, `${one!.url}/chat?user=a`)
    const b = await client(t, `${two!.url}/chat?user=b`)
    await join(a, 'news')
    await join(b, 'news')
    b.ws.send(JSON.stringify({ type: 'say', data: { room: 'news', text: 'seen' } }))
    const seen = await nextMessage(a)
    await nextMessage(b)
    a.ws.terminate()
    for (const text of ['missed 1', 'missed 2']) b.ws.send(JSON.stringify({ type: 'say', data: { room: 'news', text } }))
    await nextMessage(b)
    await nextMessage(b)
    const history = await three!.app.realtime.history('news', { since: 1 })
    t.same(history.messages.map((message) => message.offset), [2, 3], 'any instance reads the history')
    const again = await client(t, `${three!.url}/chat?user=a`)
    const reply = await join(again, 'news', { epoch: seen.epoch, offset: seen.offset })
    t.match(reply.data, { recovered: true, offset: 3 })
    t.match(await nextMessage(again), { data: { text: 'missed 1' }, offset: 2 })
    t.match(await nextMessage(again), { data: { text: 'missed 2' }, offset: 3 })
  })

  t.test('a late copy of a message a member already has is not delivered to it again (one Redis)', async (t) => {
    const { Redis } = await import('ioredis')
    const keyPrefix = `late-${randomUUID()}:`
    const redis = new Redis(url)
    t.teardown(() => { redis.disconnect() })
    const made: Array<InstanceType<typeof RedisBroker>> = []
    t.teardown(async () => { for (const broker of made) await broker.close() })
    await lateCopies(t, {
      broker: () => new RedisBroker({ client: url, keyPrefix }),
      // SPUBLISH never reaches a plain SUBSCRIBE: the instance hears nothing of these.
      silent: () => { const broker = new RedisBroker({ client: url, keyPrefix, shardedPubSub: true }); made.push(broker); return broker },
      rawPublish: async (channel, payload) => { await redis.publish(channel, payload) },
      keyPrefix
    })
  })

  t.test('an instance killed without closing leaves presence within the TTL', async (t) => {
    const presenceTtlMs = 300
    const { built: [one], keyPrefix } = await instances(t, 1, url, presenceTtlMs)
    const stay = await client(t, `${one!.url}/chat?user=stay`)
    await join(stay, 'room')
    // The doomed instance runs in a process of its own, so it can die like a crashed server.
    const child = spawn(process.execPath, [...process.execArgv, new URL('./support/fixtures/cluster-instance.ts', import.meta.url).pathname], {
      env: { ...process.env, REDIS_URL: url, KEY_PREFIX: keyPrefix, PRESENCE_TTL_MS: String(presenceTtlMs) },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    t.teardown(() => { child.kill('SIGKILL') })
    const [line] = await once(child.stdout, 'data') as [Buffer]
    const { port } = JSON.parse(line.toString()) as { port: number }
    const doomed = await client(t, `ws://127.0.0.1:${port}/chat?user=doomed`)
    await join(doomed, 'room')
    t.equal(await one!.app.realtime.presenceCount('room'), 2)
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
    const killedAt = Date.now()
    // Bounded: at most 30 looks, 50 ms apart, for a TTL of 300 ms.
    let count = 2
    for (let i = 0; i < 30 && count === 2; i++) {
      await sleep(50)
      count = await one!.app.realtime.presenceCount('room')
    }
    const gone = Date.now() - killedAt
    t.equal(count, 1, 'the killed instance\'s member left presence')
    t.ok(gone <= presenceTtlMs + 200, `within the TTL (${gone} ms)`)
    t.same((await one!.app.realtime.presence('room')).map((entry) => entry.userId), ['stay'])
  })

  t.test('redis-server restarted mid-stream: members lose nothing or are told, and the apps keep serving', { skip: redisServerPath() === null ? 'needs redis-server to restart it' : false }, async (t) => {
    const server = await startRedisServer(t)
    const { built: [one, two] } = await instances(t, 2, server.url)
    const a = await client(t, `${one!.url}/chat?user=a`)
    const b = await client(t, `${two!.url}/chat?user=b`)
    await join(a, 'live')
    await join(b, 'live')
    a.ws.send(JSON.stringify({ type: 'say', data: { room: 'live', text: 'before' } }))
    const before = await nextMessage(b)
    await nextMessage(a)
    await server.restart()
    // Redis came back empty: each instance's subscriber reconnects, finds the room under a new epoch
    // and tells its members they may have missed messages.
    for (const member of [a, b]) {
      const notice = await nextMessage(member)
      t.match(notice, { type: '$lost', data: { room: 'live', offset: Number } }, 'the member is told')
      t.not((notice.data as { epoch: string }).epoch, before.epoch, 'under a new epoch')
    }
    b.ws.send(JSON.stringify({ type: 'say', data: { room: 'live', text: 'after' } }))
    for (const member of [a, b]) {
      t.match(await nextMessage(member), { type: 'message', data: { text: 'after' }, room: 'live' }, 'and the apps keep serving')
    }
    const fresh = await client(t, `${two!.url}/chat?user=c`)
    t.match((await join(fresh, 'live', { epoch: before.epoch, offset: before.offset })).data, { recovered: false }, 'an old position cannot be recovered')
  })
})
