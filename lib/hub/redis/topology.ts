import type { Cluster } from 'ioredis'
import { roomSlot } from './key-tags.js'

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
 * reports as a node error). So the watch reads the slot map itself, every `intervalMs` and at once on
 * a node error or a node leaving, and after each read compares the master of every followed room's
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
  private nodeLeft = false
  private closed = false
  private readonly refresh = (): void => { this.read() }
  private readonly leave = (): void => { this.nodeLeft = true; this.read() }
  private readonly compare = (): void => { this.check() }

  constructor (private readonly cluster: Cluster, private readonly sharded: boolean, private readonly target: TopologyTarget, intervalMs: number) {
    this.timer = setInterval(this.refresh, intervalMs).unref()
    cluster.on('refresh', this.compare)
    cluster.on('-node', this.leave)
    cluster.on('nodeError', this.refresh)
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
    if (!this.closed) this.cluster.refreshSlotsCache()
  }

  private check (): void {
    if (this.closed) return
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

  close (): void {
    this.closed = true
    clearInterval(this.timer)
    this.cluster.off('refresh', this.compare)
    this.cluster.off('-node', this.leave)
    this.cluster.off('nodeError', this.refresh)
  }
}
