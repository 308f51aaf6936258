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
 * One timer per plugin instance for every deadline: its connections' heartbeat, receive and close
 * deadlines, its handshakes' and its contract routes' requests.
 *
 * Owners only move their deadlines later on activity (a received byte pushes the heartbeat out),
 * so activity costs a timestamp write, not a timer reset: an entry that fires early is answered
 * by the owner with its real, later deadline and pushed again. Entries for an owner that has
 * scheduled an earlier deadline since are stale and skipped.
 *
 * A deadline is never judged on input that came but was not read yet (after an event-loop stall,
 * the timers phase runs before the pending pongs are read). The timer only queues a pass with
 * `setImmediate`, and the pass judges the deadlines due by the time it was queued, as of that
 * time: a poll phase runs between the two, and it read everything that had arrived by then.
 * Deadlines that came due since (during a stall between the two) wait for the next pass, after the
 * next poll phase. The timer is armed for the earliest entry whenever no pass is queued; a pass
 * re-arms it for the earliest entry left when it ends.
 */
export class DeadlineClock {
  private readonly heap: Entry[] = []
  private readonly scheduled = new Map<DeadlineOwner, number>()
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity
  /** When the queued pass was queued, or -1 while none is. */
  private passQueuedAt = -1

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

  /** Queues a pass; an immediate queued from the timers phase or from an immediate runs after a poll phase. */
  private queuePass (): void {
    this.passQueuedAt = Date.now()
    setImmediate(pass, this)
  }

  /** @internal called by the queued pass */
  run (): void {
    // Everything that had arrived by then has been read: what was due then is judged as of then.
    const now = this.passQueuedAt
    const start = Date.now()
    const heap = this.heap
    while (heap.length > 0 && (heap[0] as Entry).at <= now) {
      if (Date.now() - start >= PASS_BUDGET_MS) {
        this.queuePass()
        return
      }
      const entry = this.pop()
      if (this.scheduled.get(entry.owner) !== entry.at) continue
      this.scheduled.delete(entry.owner)
      // A deadline at or before `now` waits for the next pass, so an owner cannot spin the loop.
      this.schedule(entry.owner, Math.max(entry.owner.onDeadline(now), now + 1))
    }
    const next = heap[0]
    if (next !== undefined && next.at <= Date.now()) {
      // Came due during this pass or a stall before it: judged after the next poll phase.
      this.queuePass()
      return
    }
    this.passQueuedAt = -1
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
