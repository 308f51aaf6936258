// The browser and Node client. Nothing here imports Node built-ins or server code; the contract is
// imported as a type only.
export { RealtimeClient } from './client.js'
export type { ClientOptions } from './options.js'
export type { ClientState, CloseInfo } from './transport.js'
export type { JoinOutcome, MessageMeta } from './rooms.js'
export type { SocketEventHandler, WebSocketClass, WebSocketLike } from './socket.js'
export type { SnapshotLoader, SnapshotPosition } from './resync.js'
export { backoffDelay } from './backoff.js'
export { RealtimeClientError, clientErrorCodes } from './errors.js'
export type { ClientErrorCode } from './errors.js'
export { CloseCode, RECONNECT_RANGE, TERMINAL_RANGE, shouldReconnect } from '../close-codes.js'
export type { ClientData, ClientType, Contract, ReplyData, ServerData, ServerType } from '../messages/contract.js'
