/** One connection in a room. */
export interface PresenceEntry<M = unknown> {
  readonly connectionId: string
  readonly userId: string | null
  /** Whatever the app attached when joining; must be JSON (typed by the contract's `presence` schema where there is one). */
  readonly meta: M
  readonly joinedAt: number
}

/**
 * Who is in which room, for `presence()` and `presenceCount()`. The hub adds an entry when a
 * connection joins an app room and removes it when it leaves or closes; nothing else writes.
 *
 * Rules for an implementation:
 * - Entries are keyed by room and connection id: adding an id again replaces its entry.
 * - Removing an entry or a room that is not there resolves and changes nothing.
 * - `list` returns the entries as they were added (JSON round trip allowed), in any order; `count`
 *   equals `list().length` without fetching the entries.
 * - A store shared by several instances keeps each instance's entries alive while the instance
 *   lives, and drops them on its own within a bounded time once it is gone (a crash never leaves
 *   members behind for ever); `close` removes this instance's entries.
 * - Failures reject the returned promise; nothing throws synchronously. `close` resolves, also
 *   when called twice or when the backend is unreachable.
 */
export interface PresenceStore {
  add (room: string, entry: PresenceEntry): Promise<void>
  remove (room: string, connectionId: string): Promise<void>
  list (room: string): Promise<PresenceEntry[]>
  count (room: string): Promise<number>
  close (): Promise<void>
}

/** Presence within one process: the plugin's default unless the broker offers its own store. */
export class MemoryPresence implements PresenceStore {
  private readonly rooms = new Map<string, Map<string, PresenceEntry>>()

  async add (room: string, entry: PresenceEntry): Promise<void> {
    let entries = this.rooms.get(room)
    if (entries === undefined) this.rooms.set(room, entries = new Map())
    entries.set(entry.connectionId, entry)
  }

  async remove (room: string, connectionId: string): Promise<void> {
    const entries = this.rooms.get(room)
    if (entries === undefined) return
    entries.delete(connectionId)
    // An empty room takes no memory.
    if (entries.size === 0) this.rooms.delete(room)
  }

  async list (room: string): Promise<PresenceEntry[]> {
    return [...(this.rooms.get(room)?.values() ?? [])]
  }

  async count (room: string): Promise<number> {
    return this.rooms.get(room)?.size ?? 0
  }

  async close (): Promise<void> {
    this.rooms.clear()
  }
}
