import type { Cluster } from 'ioredis'
import { roomSlot } from './key-tags.js'

/** The longest that events wait for a read of the slot map after the last one, in ms. */
const MAX_GAP_MS = 100

/** What a TopologyWatch needs of its broker. */
export interface TopologyTarget {
  /** The rooms followed now. */
  rooms (): Iterable<string>
  /** Subscribes the rooms again where their slots now live and catches each up from its stream. */
  moved (rooms: string[]): Promise<void>
  onError (error: Error): void
}

/**
 * Turns Redis Cluster topology changes into resubscriptions. A sharded subscription lives on the
 * master of its channel's slot, and nothing tells ioredis when that slot moves or its master fails
 * over (a subscriber is never redirected; Redis 7 only sends an unasked `sunsubscribe`, which ioredis
 * reports as a node error). So the watch reads the slot map itself (`refreshSlotsCache()`, typed
 * public in ioredis 5 though left out of its docs), every `intervalMs` and soon after a node error or
 * a node leaving (at most every 100 ms), and after each read compares the master of every followed room's
 * slot with the one it had: each room whose master changed is subscribed again and caught up. In
 * classic pub/sub a slot move changes nothing, but a node leaving may have taken the one subscriber
 * connection with it: then every room catches up. Rooms whose resubscription failed are retried at
 * the next read, so a room stalls at most about one interval after the cluster has settled.
 */
export class TopologyWatch {
  /** room → the master (`host:port`) of its slot when it was last subscribed or checked. */
  private readonly owners = new Map<string, string>()
  /** Rooms still to resubscribe: their last attempt failed. */
  private readonly retry = new Set<string>()
  private readonly timer: NodeJS.Timeout
  /** A read asked for by an event, held back until `gapMs` after the last read. */
  private soon: NodeJS.Timeout | null = null
  private lastRead = 0
  /**
   * The least time between two reads that events ask for: while a node is down, each attempt to
   * reach it is an error, and each read another attempt.
   */
  private readonly gapMs: number
  private nodeLeft = false
  private readonly refresh = (): void => { this.read() }
  private readonly event = (): void => { this.readSoon() }
  private readonly leave = (): void => { this.nodeLeft = true; this.readSoon() }
  private readonly compare = (): void => { this.check() }

  constructor (private readonly cluster: Cluster, private readonly sharded: boolean, private readonly target: TopologyTarget, intervalMs: number) {
    this.gapMs = Math.min(intervalMs, MAX_GAP_MS)
    this.timer = setInterval(this.refresh, intervalMs).unref()
    cluster.on('refresh', this.compare)
    cluster.on('-node', this.leave)
    cluster.on('nodeError', this.event)
  }

  /** Notes where a room's slot lives as it is subscribed. */
  note (room: string): void {
    const owner = this.ownerOf(room)
    if (owner !== undefined) this.owners.set(room, owner)
  }

  forget (room: string): void {
    this.owners.delete(room)
    this.retry.delete(room)
  }

  private ownerOf (room: string): string | undefined {
    return this.cluster.slots[roomSlot(room)]?.[0]
  }

  /** Reads the slot map again; ioredis emits `refresh` once it has it. */
  private read (): void {
    this.lastRead = Date.now()
    this.cluster.refreshSlotsCache()
  }

  /** Reads now, or `gapMs` after the last read if that was sooner (once, however many events ask). */
  private readSoon (): void {
    const wait = this.lastRead + this.gapMs - Date.now()
    if (wait <= 0) {
      this.read()
    } else if (this.soon === null) {
      this.soon = setTimeout(() => { this.soon = null; this.read() }, wait).unref()
    }
  }

  private check (): void {
    const moved = new Set(this.retry)
    const all = this.nodeLeft && !this.sharded
    this.nodeLeft = false
    for (const room of this.target.rooms()) {
      const owner = this.ownerOf(room)
      if (owner === undefined) continue
      if (all || this.owners.get(room) !== owner) moved.add(room)
      this.owners.set(room, owner)
    }
    if (moved.size === 0) return
    const rooms = [...moved]
    this.retry.clear()
    this.target.moved(rooms).catch((error: Error) => {
      for (const room of rooms) this.retry.add(room)
      this.target.onError(error)
    })
  }

  /** Stops reading: the timers are cleared and the cluster's events no longer heard. */
  close (): void {
    clearInterval(this.timer)
    if (this.soon !== null) clearTimeout(this.soon)
    this.cluster.off('refresh', this.compare)
    this.cluster.off('-node', this.leave)
    this.cluster.off('nodeError', this.refresh)
  }
}
