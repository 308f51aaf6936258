import type { PresenceStore } from './presence.js'

export type { PresenceEntry, PresenceStore } from './presence.js'

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

export interface HistoryQuery {
  /** Messages with an offset greater than this. A negative one is 0; a fraction selects the offsets above it. @default 0 */
  since?: number
  /** At most this many, the oldest first; 0 returns none (only the position). @default all retained */
  limit?: number
}

export interface HistoryPage {
  /** The room's position at the moment the messages were read. */
  readonly position: Position
  readonly messages: readonly RoomMessage[]
}

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
  /**
   * Messages of a subscribed room were missed and cannot be replayed from the history (Redis lost
   * its data, a reconnect came after they aged out). The hub sends `$lost` to the room's members
   * so they reload; delivery goes on with the messages after `position`, the room's position when
   * the loss was found.
   */
  lost (room: string, position: Position): void
  /** A failure in the background (a reconnect, a refresh): the broker retries by itself; this is for the log. */
  error?: (error: Error) => void
}

/**
 * Carries room messages and their history, within one process (`MemoryBroker`) or across
 * instances (`RedisBroker`, or your own: see docs/writing-a-broker.md). The hub above it keeps
 * who is in which room, computes recoveries from `history()` (lib/hub/recovery.ts) and fans out;
 * presence lives in a separate `PresenceStore`.
 *
 * The rules, each checked by name by the conformance suite (`fastify-realtime/testing`):
 *
 * - **dense-offsets**: within an epoch, every stored message takes the room's next offset (1, 2,
 *   3, …): no gap, no repeat, also under concurrent publishes from several instances.
 *   `position().offset` is the last offset given, 0 before the first.
 * - **envelope**: a message's `text` is `roomEnvelope(body, room, epoch, offset)` and its `time` the
 *   publish time in ms; `publish()` returns the message as stored (without `except`).
 * - **epoch**: a non-empty string that stays while the room's history lives: reading a position
 *   or a history never changes it, and the first publish keeps the epoch a position read showed.
 *   Whenever the history may be gone (a restart of an in-memory broker, a backend that lost its
 *   data, a room idle past `ttlMs`), the room gets an epoch it never had, and offsets count from 0.
 * - **atomic-publish**: a message's offset and its place in the history are given in one step per
 *   room: once `publish()` resolves, `history()` holds the message (until the bounds drop it) and
 *   `position()` is at or past it; a history never shows a position without the messages up to
 *   it that are still kept.
 * - **history-order**: `history()` returns a position and, read at that same moment, the kept
 *   messages with an offset above `since`, oldest first, at most `limit`. What is kept is always
 *   the unbroken run of the newest messages up to the position: the bounds drop the oldest first,
 *   and there is never a hole. This is what makes recovery exact: the hub replays a client's gap
 *   only when the history holds all of it, never partly (**no-partial-recovery**).
 * - **history-bounds**: at most `history.size` messages per room, none older than
 *   `history.ttlMs`; a room with no message for `ttlMs` may be forgotten (then: a new epoch).
 * - **unstored**: a message published with `history: false` is delivered live, is not kept, takes
 *   no offset (it carries the room's current one) and has `history: false`.
 * - **live-delivery**: after `subscribe(room)` resolves, every message published to the room
 *   (on any instance) reaches `events.message` once, in publish order, with its `except`;
 *   subscribing again changes nothing; after `unsubscribe(room)` resolves nothing more of the
 *   room is delivered; rooms not subscribed deliver nothing.
 * - **order-after-gap**: a transport that can drop or reorder messages (pub/sub that is at most
 *   once, a reconnect) never delivers a message before one it missed: it fills the gap from the
 *   history first, or, when the history no longer holds the gap, calls `events.lost()` and goes on
 *   after the position it reports. `OrderedDelivery` (lib/hub/ordered-delivery.ts) does this for
 *   any broker that gives it a `read`.
 * - **errors**: every method but `attach` returns a promise and reports failure by rejecting it,
 *   never by throwing; a rejected `subscribe` leaves the room unsubscribed; failures in the
 *   background go to `events.error` and the broker retries by itself; `close()` resolves, also a
 *   second time and when the backend is unreachable.
 * - **shared-rooms** (brokers that span instances): another instance on the same backend sees the
 *   same positions, history and live messages.
 */
export interface Broker {
  /** Sets the receiver of subscribed rooms' messages; called once by the hub before anything else. */
  attach (events: BrokerEvents): void
  /** Publishes `body` (the serialized `{ "type", "data" }`) to a room and returns it as stored. */
  publish (room: string, body: string, options?: PublishOptions): Promise<RoomMessage>
  /** Starts delivering the room's messages to `attach`'s `message`; the hub subscribes while it has local members. */
  subscribe (room: string): Promise<void>
  unsubscribe (room: string): Promise<void>
  /** The room's position; a room never published to is at offset 0 of a new epoch. */
  position (room: string): Promise<Position>
  /** The room's position and its kept messages after `since`, oldest first (see history-order). */
  history (room: string, query?: HistoryQuery): Promise<HistoryPage>
  /**
   * Optional, for brokers whose history can go backwards within an epoch (a Redis failover to a
   * replica that lacked the last writes): a client recovering showed an offset of the room's
   * current epoch above its position, so the offsets after the position were handed out before and
   * may be handed out again to other messages. The broker starts a new epoch if the room is still
   * at `position.epoch` (every member is told `$lost`, no recovery reaches across) and returns the
   * room's position after. Recovery answers `recovered: false` either way.
   */
  rewound? (room: string, position: Position): Promise<Position>
  /** Stops delivery and releases what the broker opened. The hub calls it when the app closes. */
  close (): Promise<void>
  /**
   * The broker's own presence store, when its backend keeps one (the plugin's `presence` option
   * defaults to it, and to a `MemoryPresence` otherwise). The broker closes it in `close()`.
   */
  readonly presence?: PresenceStore
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

/**
 * A `since` or `limit` of a HistoryQuery as a whole number: negative and NaN as 0, fractions
 * rounded down (they select the same messages), at most the largest safe integer.
 */
export function wholeQueryNumber (value: number): number {
  return value >= 0 ? Math.min(Math.floor(value), Number.MAX_SAFE_INTEGER) : 0
}
