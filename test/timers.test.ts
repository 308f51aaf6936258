import { once } from 'node:events'
import net from 'node:net'
import t, { type Test } from 'tap'
import { DeadlineClock, PASS_BUDGET_MS, type DeadlineOwner } from '../lib/connection/timers.js'
import './support/process-guard.js'

// The clock's timer is unref'd (it must not hold a server open); this keeps the test process alive.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

function owner (log: string[], name: string, next: () => number): DeadlineOwner {
  return { onDeadline: () => { log.push(name); return next() } }
}

t.test('owners are woken in deadline order', async (t) => {
  const clock = new DeadlineClock()
  const log: string[] = []
  const done = new Promise<void>((resolve) => {
    const now = Date.now()
    for (const [name, delay] of [['c', 30], ['a', 5], ['d', 40], ['b', 15]] as const) {
      clock.schedule(owner(log, name, () => { if (log.length === 4) resolve(); return Infinity }), now + delay)
    }
  })
  await done
  t.same(log, ['a', 'b', 'c', 'd'])
  t.equal(clock.size, 0)
})

t.test('a later schedule keeps the earlier deadline, an earlier one replaces it, and cancel forgets', async (t) => {
  const clock = new DeadlineClock()
  const log: string[] = []
  const now = Date.now()
  let finish!: () => void
  const done = new Promise<void>((resolve) => { finish = resolve })
  const first = owner(log, 'first', () => { finish(); return Infinity })
  clock.schedule(first, now + 50)
  clock.schedule(first, now + 80)
  clock.schedule(first, now + 10)
  const cancelled = owner(log, 'cancelled', () => Infinity)
  clock.schedule(cancelled, now + 5)
  clock.cancel(cancelled)
  clock.schedule(first, Infinity)
  t.equal(clock.size, 1)
  await done
  t.same(log, ['first'], 'woken once, at the earliest deadline, and never for the cancelled owner')
})

t.test('an owner that answers with a later deadline is woken again then', async (t) => {
  const clock = new DeadlineClock()
  const times: number[] = []
  const start = Date.now()
  await new Promise<void>((resolve) => {
    clock.schedule({
      onDeadline (now) {
        times.push(now - start)
        if (times.length === 3) { resolve(); return Infinity }
        return now + 10
      }
    }, start + 10)
  })
  t.equal(times.length, 3)
  t.ok((times[2] as number) >= 28, `woken three times about 10 ms apart (${times.join(', ')})`)
})

t.test('an owner that reports a deadline already past is not spun on in the same turn', async (t) => {
  const clock = new DeadlineClock()
  let calls = 0
  await new Promise<void>((resolve) => {
    clock.schedule({
      onDeadline (now) {
        calls++
        if (calls === 3) { resolve(); return Infinity }
        return now - 5
      }
    }, Date.now())
  })
  t.equal(calls, 3)
})

t.test('many owners keep the heap ordered', async (t) => {
  const clock = new DeadlineClock()
  const order: number[] = []
  const now = Date.now()
  const delays = Array.from({ length: 200 }, (_, i) => (i * 37) % 100)
  await new Promise<void>((resolve) => {
    delays.forEach((delay) => {
      clock.schedule({ onDeadline: () => { order.push(delay); if (order.length === delays.length) resolve(); return Infinity } }, now + delay)
    })
  })
  t.same(order, [...order].sort((a, b) => a - b))
})

/** How late a deadline may fire on a loaded machine; the bug this guards against was a second late. */
const LATE_MS = 400

interface Fired { due: number, now: number, at: number }

/** Schedules one owner per due time, in the order given, and resolves with when each was woken. */
async function fireAll (clock: DeadlineClock, dues: number[]): Promise<Fired[]> {
  const fired: Fired[] = []
  await new Promise<void>((resolve) => {
    for (const due of dues) {
      clock.schedule({
        onDeadline (now) {
          fired.push({ due, now, at: Date.now() })
          if (fired.length === dues.length) resolve()
          return Infinity
        }
      }, due)
    }
  })
  return fired
}

function checkTimes (t: Test, fired: Fired[]): void {
  const early = fired.filter(({ due, now }) => now < due)
  const late = fired.filter(({ due, at }) => at - due > LATE_MS)
  t.same(early, [], 'none woken before its deadline')
  t.same(late, [], `none woken more than ${LATE_MS} ms late`)
  t.same(fired.map(({ due }) => due), fired.map(({ due }) => due).sort((a, b) => a - b), 'woken in deadline order')
}

const COUNT = 40
const orders: Record<string, (offsets: number[]) => number[]> = {
  'in ascending order': (offsets) => offsets,
  'in descending order': (offsets) => [...offsets].reverse(),
  // A fixed permutation (17 is coprime with 40), so a failure replays.
  'in shuffled order': (offsets) => offsets.map((_, i) => offsets[(i * 17) % offsets.length] as number),
  'all for the same time': (offsets) => offsets.map(() => 30)
}
for (const [order, arrange] of Object.entries(orders)) {
  t.test(`deadlines set ${order} are each woken at their time`, async (t) => {
    const clock = new DeadlineClock()
    const base = Date.now() + 10
    const offsets = Array.from({ length: COUNT }, (_, i) => i * 3)
    checkTimes(t, await fireAll(clock, arrange(offsets).map((offset) => base + offset)))
    t.equal(clock.size, 0)
  })
}

t.test('an earlier deadline already waiting is not missed when an owner moves its own later during a pass', async (t) => {
  const clock = new DeadlineClock()
  const start = Date.now()
  const far = { onDeadline: () => Infinity }
  // `mover` is woken first and answers with a deadline far away; `waiting` is due long before that.
  const mover = { onDeadline: (now: number) => now + 5000 }
  clock.schedule(mover, start + 5)
  clock.schedule(far, start + 6000)
  const fired = await fireAll(clock, [start + 40])
  checkTimes(t, fired)
  clock.cancel(mover)
  clock.cancel(far)
})

t.test('owners that other owners schedule during a pass, all later than one already waiting, are each woken at their time', async (t) => {
  const clock = new DeadlineClock()
  const start = Date.now()
  const fired: Fired[] = []
  const expected = 4
  let finish!: () => void
  const done = new Promise<void>((resolve) => { finish = resolve })
  const record = (due: number): DeadlineOwner => ({
    onDeadline (now) {
      fired.push({ due, now, at: Date.now() })
      if (fired.length === expected) finish()
      return Infinity
    }
  })
  const far = { onDeadline: () => Infinity }
  // Woken first: sets deadlines for others, far away first, all after the one waiting at +30.
  clock.schedule({
    onDeadline (now) {
      fired.push({ due: start + 5, now, at: Date.now() })
      clock.schedule(far, now + 5000)
      for (const offset of [500, 550]) clock.schedule(record(now + offset), now + offset)
      return Infinity
    }
  }, start + 5)
  clock.schedule(record(start + 30), start + 30)
  await done
  clock.cancel(far)
  checkTimes(t, fired)
})

t.test('a cancelled owner is not woken; scheduled again, it is woken at its new time, once', async (t) => {
  const clock = new DeadlineClock()
  const start = Date.now()
  const log: Fired[] = []
  let finish!: () => void
  const done = new Promise<void>((resolve) => { finish = resolve })
  const owner = { onDeadline (now: number) { log.push({ due: start + 40, now, at: Date.now() }); finish(); return Infinity } }
  clock.schedule(owner, start + 10)
  clock.cancel(owner)
  clock.schedule(owner, start + 200)
  // Moved earlier: the entry at +200 is stale from now on.
  clock.schedule(owner, start + 40)
  await done
  // A later owner: once it is woken, the stale entry at +200 has been passed too.
  await fireAll(clock, [start + 260])
  t.equal(log.length, 1, 'woken once: the stale entries were skipped')
  checkTimes(t, log)
})

t.test('a burst of due deadlines is worked off in passes of about PASS_BUDGET_MS, with the event loop turning between them', async (t) => {
  const clock = new DeadlineClock()
  // Each owner takes OWNER_MS by the clock the pass measures itself with, so a pass fits a known number.
  const OWNER_MS = 2
  const perPass = PASS_BUDGET_MS / OWNER_MS
  const count = perPass * 6
  const passes: number[] = []
  let inPass = false
  const due = Date.now() + 5
  await new Promise<void>((resolve) => {
    let woken = 0
    for (let i = 0; i < count; i++) {
      clock.schedule({
        onDeadline () {
          // A pass is one macrotask: the flag lives until its microtasks run.
          if (!inPass) {
            inPass = true
            passes.push(0)
            queueMicrotask(() => { inPass = false })
          }
          passes[passes.length - 1] = (passes.at(-1) as number) + 1
          const start = Date.now()
          while (Date.now() < start + OWNER_MS) { /* the owner's work */ }
          if (++woken === count) resolve()
          return Infinity
        }
      }, due)
    }
  })
  t.ok(passes.length >= 6, `${passes.length} passes`)
  t.ok(passes.every((size) => size <= perPass), `at most ${perPass} owners of ${OWNER_MS} ms in a pass: ${passes.join(', ')}`)
  t.equal(passes.reduce((a, b) => a + b, 0), count)
})

/** Both ends of a TCP connection in this process; `received` turns true once the server end has read a byte. */
async function tcpPair (t: Test): Promise<{ client: net.Socket, received: () => boolean }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  const [accepted] = await once(server, 'connection') as [net.Socket]
  let got = false
  accepted.on('data', () => { got = true })
  t.teardown(() => { client.destroy(); accepted.destroy(); server.close() })
  return { client, received: () => got }
}

function stall (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* blocks the event loop on purpose */ }
}

t.test('a pass reads what arrived during a stall in a timer before it judges (the timers phase runs before the poll phase)', async (t) => {
  const { client, received } = await tcpPair(t)
  const clock = new DeadlineClock()
  const judged = new Promise<boolean>((resolve) => {
    // Both timers in the same list, the stall first: it runs just before the clock's timer.
    setTimeout(() => { client.write('x'); stall(60) }, 0)
    clock.schedule({ onDeadline: () => { resolve(received()); return Infinity } }, Date.now())
  })
  t.equal(await judged, true)
})

t.test('a deadline that comes due during a stall between the timer and its pass is judged after what arrived before it is read', async (t) => {
  const { client, received } = await tcpPair(t)
  const clock = new DeadlineClock()
  const judged = new Promise<boolean>((resolve) => {
    setImmediate(() => {
      const start = Date.now()
      // Due now: its timer queues the pass in the next turn.
      clock.schedule({ onDeadline: () => Infinity }, start)
      // Due during the stall below, after that pass was queued; its input arrives before it is due.
      clock.schedule({ onDeadline: () => { resolve(received()); return Infinity } }, start + 20)
      // Runs in the next check phase, after the timer has queued its pass and before the pass.
      setImmediate(() => { client.write('x'); stall(60) })
      // The timer is due when the next turn starts.
      stall(5)
    })
  })
  t.equal(await judged, true)
})
