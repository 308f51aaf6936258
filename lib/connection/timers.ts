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
 * One timer for every connection's heartbeat, receive and close deadlines.
 *
 * Owners only move their deadlines later on activity (a received byte pushes the heartbeat out),
 * so activity costs a timestamp write, not a timer reset: an entry that fires early is answered
 * by the owner with its real, later deadline and pushed again. Entries for an owner that has
 * scheduled an earlier deadline since are stale and skipped.
 */
export class DeadlineClock {
  private readonly heap: Entry[] = []
  private readonly scheduled = new Map<DeadlineOwner, number>()
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity

  /** Makes sure `owner` is woken at `at` or earlier. */
  schedule (owner: DeadlineOwner, at: number): void {
    if (!Number.isFinite(at)) return
    const current = this.scheduled.get(owner)
    if (current !== undefined && current <= at) return
    this.scheduled.set(owner, at)
    this.push({ at, owner })
    if (at < this.timerAt) this.arm(at)
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

  /** @internal called by the timer */
  run (): void {
    this.timer = null
    this.timerAt = Infinity
    const now = Date.now()
    while (this.heap.length > 0 && (this.heap[0] as Entry).at <= now) {
      const entry = this.pop()
      if (this.scheduled.get(entry.owner) !== entry.at) continue
      this.scheduled.delete(entry.owner)
      // A deadline at or before `now` waits for the next turn, so an owner cannot spin the loop.
      this.schedule(entry.owner, Math.max(entry.owner.onDeadline(now), now + 1))
    }
    const next = this.heap[0]
    if (next !== undefined && this.timer === null) this.arm(next.at)
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

// Module-level so the clock's timer needs no closure.
function fire (clock: DeadlineClock): void {
  clock.run()
}
