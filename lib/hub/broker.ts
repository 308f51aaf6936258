/** Where a room's history stands: the epoch changes whenever the history is lost. */
export interface Position {
  readonly epoch: string
  /** The offset of the room's last message; 0 before the first. Offsets increase by one per message. */
  readonly offset: number
}

/** A message published to a room, as every member receives it. */
export interface RoomMessage {
  readonly room: string
  readonly epoch: string
  readonly offset: number
  /** When it was published, in ms since the epoch. */
  readonly time: number
  /** The wire text: the `{ "type", "data" }` body with `"room"`, `"epoch"` and `"offset"` added (see roomEnvelope). */
  readonly text: string
  /** A connection id that must not receive it (the sender of a broadcast); live delivery only, not stored. */
  readonly except?: string
  /**
   * False for a message that is not kept (notices, `toUser`, `toRoute`): it takes no offset of its own
   * (it carries the room's current one), so it never opens a gap that would fail a recovery.
   */
  readonly history?: false
}

/** One connection in a room. */
export interface PresenceEntry {
  readonly connectionId: string
  readonly userId: string | null
  /** Whatever the app attached when joining; must be JSON. */
  readonly meta: unknown
  readonly joinedAt: number
}

export interface HistoryQuery {
  /** Messages with an offset greater than this. @default 0 */
  since?: number
  /** At most this many, the oldest first. @default all retained */
  limit?: number
}

export interface HistoryPage {
  readonly position: Position
  readonly messages: readonly RoomMessage[]
}

/** What a reconnecting client gets: everything it missed in order, or `recovered: false` and nothing. */
export type Recovery =
  | { readonly recovered: true, readonly position: Position, readonly messages: readonly RoomMessage[] }
  | { readonly recovered: false, readonly position: Position, readonly messages: readonly [] }

export interface PublishOptions {
  /** Keep the message in the room's history and give it the next offset; false: deliver it live only. @default true */
  history?: boolean
  /** A connection id to leave out of the live delivery (carried to every instance). */
  except?: string
}

/** What a broker tells the hub. */
export interface BrokerEvents {
  /** A message of a subscribed room, from this instance or another. */
  message (message: RoomMessage): void
  /** Messages of a subscribed room may have been missed and could not be replayed (e.g. Redis lost data). */
  lost (room: string, position: Position): void
  /** A failure in the background (a reconnect, a refresh): the broker retries by itself; this is for the log. */
  error?: (error: Error) => void
}

/**
 * Carries room messages, history and presence, within one process (memory) or across instances
 * (Redis). Both implementations pass test/broker-contract.ts.
 */
export interface Broker {
  /** Sets the receiver of subscribed rooms' messages; called once by the hub before anything else. */
  attach (events: BrokerEvents): void
  /** Publishes `body` (the serialized `{ "type", "data" }`) to a room and returns it as delivered. */
  publish (room: string, body: string, options?: PublishOptions): Promise<RoomMessage>
  /** Starts delivering the room's messages to `attach`'s `message`; the hub subscribes while it has local members. */
  subscribe (room: string): Promise<void>
  unsubscribe (room: string): Promise<void>
  position (room: string): Promise<Position>
  history (room: string, query?: HistoryQuery): Promise<HistoryPage>
  /** Every message after `offset` if `epoch` is current and none has aged out; never a partial replay. */
  recover (room: string, epoch: string, offset: number): Promise<Recovery>
  presenceAdd (room: string, entry: PresenceEntry): Promise<void>
  presenceRemove (room: string, connectionId: string): Promise<void>
  presence (room: string): Promise<PresenceEntry[]>
  /** The number of presence entries, without fetching them. */
  presenceCount (room: string): Promise<number>
  close (): Promise<void>
}

export interface HistoryLimits {
  /** Messages kept per room. @default 100 */
  size: number
  /** How long a message is kept, in ms. @default 300000 */
  ttlMs: number
}

export const defaultHistoryLimits: HistoryLimits = Object.freeze({ size: 100, ttlMs: 300_000 })

/**
 * The wire text of a room message: `body` (a JSON object) with room, epoch and offset added. Built
 * once per publish, so every member gets the same string.
 */
export function roomEnvelope (body: string, room: string, epoch: string, offset: number): string {
  return `${body.slice(0, -1)},"room":${JSON.stringify(room)},"epoch":${JSON.stringify(epoch)},"offset":${offset}}`
}
