// The browser and Node client. Nothing here imports Node built-ins or server code; the contract is
// imported as a type only.
export { RealtimeClient } from './client.js'
export type { ClientOptions, ClientState, CloseInfo, JoinOutcome, MessageMeta, SocketEventHandler, WebSocketClass, WebSocketLike } from './client.js'
export type { SnapshotLoader, SnapshotPosition } from './resync.js'
export { backoffDelay } from './backoff.js'
export { RealtimeClientError, clientErrorCodes } from './errors.js'
export type { ClientErrorCode } from './errors.js'
export { CloseCode, RECONNECT_RANGE, TERMINAL_RANGE, shouldReconnect } from '../close-codes.js'
export type { ClientData, ClientType, Contract, ReplyData, ServerData, ServerType } from '../messages/contract.js'
