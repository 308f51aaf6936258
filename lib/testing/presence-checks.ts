import type { PresenceEntry, PresenceStore } from '../hub/presence.js'
import type { BrokerCheck } from './broker-checks.js'
import { same } from './expect.js'
import type { BrokerRule } from './rules.js'

export interface PresenceConformanceOptions {
  /** Put before each check's name. @default 'presence' */
  name?: string
  /** A new store with no entries. Each check closes the stores it makes. */
  create (): PresenceStore | Promise<PresenceStore>
  /** For a store shared by instances: another instance on the same backend as `store`. */
  peer? (store: PresenceStore): PresenceStore | Promise<PresenceStore>
  /** Runs after each check, passed or failed, once its stores are closed. */
  cleanup? (): void | Promise<void>
}

/** A presence entry for checks. */
export function entry (connectionId: string, userId: string | null = null, meta: unknown = null): PresenceEntry {
  return { connectionId, userId, meta, joinedAt: 1_700_000_000_000 }
}

const byConnection = (a: PresenceEntry, b: PresenceEntry): number => a.connectionId.localeCompare(b.connectionId)

type Open = (store?: PresenceStore) => Promise<PresenceStore>
type Definition = [name: string, rule: BrokerRule, run: (open: Open) => Promise<void>]

const definitions: Definition[] = [
  ['add, remove, list and count', 'presence', async (open) => {
    const store = await open()
    same('presence', await store.list('lobby'), [], 'an empty room')
    same('presence', await store.count('lobby'), 0, 'counts 0')
    const alice = entry('c1', 'alice', { status: 'here', tags: ['x'] })
    const anonymous = entry('c2', null, null)
    await store.add('lobby', alice)
    await store.add('lobby', anonymous)
    same('presence', (await store.list('lobby')).sort(byConnection), [alice, anonymous], 'both entries')
    same('presence', await store.count('lobby'), 2, 'counted')
    const away = entry('c1', 'alice', { status: 'away' })
    await store.add('lobby', away)
    same('presence', (await store.list('lobby')).sort(byConnection), [away, anonymous], 'adding again replaces the entry')
    same('presence', await store.count('lobby'), 2, 'and counts once')
    same('presence', await store.list('other'), [], 'rooms are separate')
    await store.remove('lobby', 'c1')
    await store.remove('lobby', 'not-there')
    await store.remove('no-room', 'c1')
    same('presence', await store.list('lobby'), [anonymous], 'a removed entry is gone')
    same('presence', await store.count('lobby'), 1, 'and not counted')
    await store.remove('lobby', 'c2')
    same('presence', await store.list('lobby'), [], 'the last one removed')
    same('presence', await store.count('lobby'), 0, 'counts 0 again')
  }],

  ['close() resolves, and again', 'errors', async (open) => {
    const store = await open()
    await store.add('a', entry('c1'))
    await store.close()
    await store.close()
  }],

  ['a second instance sees the same entries, and closing one removes its own only', 'shared-rooms', async (open) => {
    const store = await open()
    const other = await open(store)
    // A store of one process has nothing to share.
    if (other === store) return
    await store.add('x', entry('c1'))
    await other.add('x', entry('c2'))
    same('shared-rooms', (await other.list('x')).sort(byConnection), [entry('c1'), entry('c2')], 'both entries from either instance')
    same('shared-rooms', await store.count('x'), 2, 'counted from either')
    await other.close()
    same('shared-rooms', await store.list('x'), [entry('c1')], 'closing an instance removed its own entries')
  }]
]

/** The checks a PresenceStore must pass, as brokerChecks() for brokers. */
export function presenceChecks (options: PresenceConformanceOptions): BrokerCheck[] {
  const prefix = options.name ?? 'presence'
  return definitions.map(([name, rule, run]) => ({
    name: `${prefix}: ${name}`,
    rule,
    async run () {
      const opened: PresenceStore[] = []
      // Without a peer, a second open() gives the first store back.
      const open: Open = async (store) => {
        if (store !== undefined && options.peer === undefined) return store
        const made = await (store === undefined ? options.create() : (options.peer as NonNullable<typeof options.peer>)(store))
        opened.push(made)
        return made
      }
      try {
        await run(open)
      } finally {
        for (const store of opened) await store.close()
        await options.cleanup?.()
      }
    }
  }))
}
