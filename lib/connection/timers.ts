/** Something with deadlines: the clock calls `onDeadline` once its earliest deadline has come. */
export interface DeadlineOwner {
  /** Handles whatever is due at `now` and returns its next deadline (ms since epoch), or Infinity. */
  onDeadline (now: number): number
}

interface Entry {
  at: number
  owner: DeadlineOwner
}

/**
 * How long one pass may wake owners, in ms. A burst of due deadlines (thousands of heartbeats) is
 * worked off in passes of about this length with the poll phase in between, so it cannot block the
 * event loop in one go, and what arrives meanwhile (pongs) is read before the next owners are
 * judged. A bound on time rather than on owners: a busy process that gets few turns still wakes as
 * many owners per second as it has time for.
 */
export const PASS_BUDGET_MS = 10
/**
 * A pass that starts this much later than it was queued ran after something blocked the event loop
 * in the same turn (a stall in an I/O callback or an earlier immediate): bytes that arrived during
 * the block are still unread, so the pass waits for one more poll phase before judging anyone.
 */
export const STALL_MS = 20

/**
 * One timer for every connection's heartbeat, receive and close deadlines (and, as other instances,
 * for handshakes and requests).
 *
 * Owners only move their deadlines later on activity (a received byte pushes the heartbeat out),
 * so activity costs a timestamp write, not a timer reset: an entry that fires early is answered
 * by the owner with its real, later deadline and pushed again. Entries for an owner that has
 * scheduled an earlier deadline since are stale and skipped.
 *
 * The timer only queues a pass with `setImmediate`: the pass runs in the check phase, after the poll
 * phase has read what arrived, so a deadline is never judged on data that came but was not read
 * (after an event-loop stall the timers phase would otherwise run before the pending pongs are
 * read). The timer is armed for the earliest entry whenever no pass is queued; a pass re-arms it
 * for the earliest entry left when it ends.
 */
export class DeadlineClock {
  private readonly heap: Entry[] = []
  private readonly scheduled = new Map<DeadlineOwner, number>()
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity
  /** When the queued pass was queued, or -1 while none is. */
  private passQueuedAt = -1
  /** The queued pass already waited a turn for a stall: it runs whatever happens. */
  private passWaited = false

  /** Makes sure `owner` is woken at `at` or earlier. */
  schedule (owner: DeadlineOwner, at: number): void {
    if (!Number.isFinite(at)) return
    const current = this.scheduled.get(owner)
    if (current !== undefined && current <= at) return
    this.scheduled.set(owner, at)
    this.push({ at, owner })
    // A queued pass arms the timer for the earliest entry once it is done.
    if (this.passQueuedAt < 0 && at < this.timerAt) this.arm(at)
  }

  /** Forgets `owner`; its pending entries become stale. */
  cancel (owner: DeadlineOwner): void {
    this.scheduled.delete(owner)
  }

  /** How many owners are waiting (for tests and metrics). */
  get size (): number {
    return this.scheduled.size
  }

  private arm (at: number): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(fire, Math.max(0, at - Date.now()), this)
    this.timer.unref()
  }

  /** @internal called by the timer: the pass waits for the poll phase. */
  wake (): void {
    this.timer = null
    this.timerAt = Infinity
    this.queuePass()
  }

  private queuePass (): void {
    this.passQueuedAt = Date.now()
    setImmediate(pass, this)
  }

  /** @internal called by the queued pass */
  run (): void {
    const now = Date.now()
    if (!this.passWaited && now - this.passQueuedAt > STALL_MS) {
      this.passWaited = true
      this.queuePass()
      return
    }
    this.passWaited = false
    const heap = this.heap
    while (heap.length > 0 && (heap[0] as Entry).at <= now) {
      if (Date.now() - now >= PASS_BUDGET_MS) {
        // The rest after the next poll phase; an immediate queued from an immediate waits for it.
        this.queuePass()
        return
      }
      const entry = this.pop()
      if (this.scheduled.get(entry.owner) !== entry.at) continue
      this.scheduled.delete(entry.owner)
      // A deadline at or before `now` waits for the next turn, so an owner cannot spin the loop.
      this.schedule(entry.owner, Math.max(entry.owner.onDeadline(now), now + 1))
    }
    this.passQueuedAt = -1
    const next = heap[0]
    if (next !== undefined) this.arm(next.at)
  }

  private push (entry: Entry): void {
    const heap = this.heap
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((heap[parent] as Entry).at <= entry.at) break
      heap[i] = heap[parent] as Entry
      i = parent
    }
    heap[i] = entry
  }

  private pop (): Entry {
    const heap = this.heap
    const top = heap[0] as Entry
    const last = heap.pop() as Entry
    if (heap.length > 0) {
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        if (left >= heap.length) break
        const right = left + 1
        const child = right < heap.length && (heap[right] as Entry).at < (heap[left] as Entry).at ? right : left
        if ((heap[child] as Entry).at >= last.at) break
        heap[i] = heap[child] as Entry
        i = child
      }
      heap[i] = last
    }
    return top
  }
}

// Module-level so the clock's timer and pass need no closure.
function fire (clock: DeadlineClock): void {
  clock.wake()
}
function pass (clock: DeadlineClock): void {
  clock.run()
}
