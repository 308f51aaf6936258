import type { PresenceEntry, PresenceStore } from '../presence.js'
import { roomKeys } from './keys.js'
import type { Client } from './scripts.js'

/**
 * Presence on Redis, as TTL'd entries: a hash per room (connection id → JSON entry) and a sorted
 * set of their expiry times. Each instance refreshes the entries it added every `ttlMs / 2` (and
 * adds them back if Redis lost them), so a crashed instance's members disappear within `ttlMs`.
 * A RedisBroker makes one on its own client: `broker.presence`.
 */
export class RedisPresence implements PresenceStore {
  /** Entries this instance added and refreshes: room → connection id → JSON. */
  private readonly owned = new Map<string, Map<string, string>>()
  private readonly refreshTimer: NodeJS.Timeout
  private closed = false

  constructor (private readonly client: Client, private readonly prefix: string, private readonly ttlMs: number, private readonly onError: (error: Error) => void) {
    this.refreshTimer = setInterval(() => { this.refresh() }, Math.floor(ttlMs / 2)).unref()
  }

  async add (room: string, entry: PresenceEntry): Promise<void> {
    const json = JSON.stringify(entry)
    let mine = this.owned.get(room)
    if (mine === undefined) this.owned.set(room, mine = new Map())
    mine.set(entry.connectionId, json)
    const keys = roomKeys(this.prefix, room)
    await this.client.fastifyRealtimePresenceAdd(keys.presence, keys.expiry, this.ttlMs, entry.connectionId, json)
  }

  async remove (room: string, connectionId: string): Promise<void> {
    const mine = this.owned.get(room)
    if (mine !== undefined) {
      mine.delete(connectionId)
      if (mine.size === 0) this.owned.delete(room)
    }
    const keys = roomKeys(this.prefix, room)
    await this.client.multi().hdel(keys.presence, connectionId).zrem(keys.expiry, connectionId).exec()
  }

  async list (room: string): Promise<PresenceEntry[]> {
    const keys = roomKeys(this.prefix, room)
    const values = await this.client.fastifyRealtimePresence(keys.presence, keys.expiry) as string[]
    return values.map((value) => JSON.parse(value) as PresenceEntry)
  }

  async count (room: string): Promise<number> {
    const keys = roomKeys(this.prefix, room)
    return await this.client.fastifyRealtimePresenceCount(keys.presence, keys.expiry) as number
  }

  /** Extends this instance's entries (and adds them back if Redis lost them). */
  private refresh (): void {
    for (const [room, mine] of this.owned) {
      const keys = roomKeys(this.prefix, room)
      const args: string[] = []
      for (const [connectionId, json] of mine) args.push(connectionId, json)
      this.client.fastifyRealtimePresenceAdd(keys.presence, keys.expiry, this.ttlMs, ...args).catch(this.onError)
    }
  }

  /**
   * Stops refreshing and removes this instance's entries, one transaction per room (a room's keys
   * share a slot, rooms do not: on a Redis Cluster one pipeline may not span them); resolves also
   * when Redis is unreachable.
   */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.refreshTimer)
    const removals = [...this.owned].map(([room, mine]) => {
      const keys = roomKeys(this.prefix, room)
      return this.client.multi().hdel(keys.presence, ...mine.keys()).zrem(keys.expiry, ...mine.keys()).exec()
    })
    this.owned.clear()
    // Unreachable Redis: the entries expire within ttlMs anyway, and closing must not fail.
    for (const result of await Promise.allSettled(removals)) {
      if (result.status === 'rejected') this.onError(result.reason as Error)
    }
  }
}
