import t from 'tap'
import { DeadlineClock, type DeadlineOwner } from '../lib/connection/timers.js'
import './process-guard.js'

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
