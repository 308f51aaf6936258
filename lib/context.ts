import type { ConnectionContext, RealtimeConnection } from './connection/connection.js'
import type { ContractRoute } from './asyncapi/document.js'
import type { DeadlineClock } from './connection/timers.js'
import type { GuardSettings } from './options/guard.js'
import type { Handshakes } from './handshake/handshakes.js'
import type { Hub } from './hub/hub.js'
import type { Registry } from './hub/registry.js'
import type { RealtimeMetrics } from './metrics.js'
import type { RouteSettings } from './options/route.js'
import type { WsServers } from './connection/ws-servers.js'

/**
 * What one registration of the plugin owns: built once in index.ts, handed to each of its routes,
 * and carried by each of its connections (`connection.plugin`), so a connection's session finds its
 * hub and clock there instead of through a decorator or a module-level singleton.
 */
export interface PluginContext extends ConnectionContext {
  /** The route defaults: register()'s route options over the built-in ones. */
  readonly settings: RouteSettings
  /** Plugin-wide bounds on handshakes and connections. */
  readonly guard: GuardSettings
  /** Rooms, presence and history over the broker. */
  readonly hub: Hub
  /** The contract connections: listed, disconnected, waited for on shutdown. */
  readonly registry: Registry
  /** One timer for every deadline of this instance: connections', handshakes' and requests'. */
  readonly clock: DeadlineClock
  readonly metrics: RealtimeMetrics
  readonly handshakes: Handshakes
  /** The open connections, closed on shutdown. */
  readonly connections: Set<RealtimeConnection>
  /** The app logger's `req` serializer (Fastify's fields when the logger is not pino). */
  readonly requestSerializer: (request: object) => unknown
  /** The ws servers of the routes, one per distinct set of ws settings. */
  readonly wsServers: WsServers
  /** The contract routes registered so far, for the AsyncAPI document. */
  readonly contractRoutes: ContractRoute[]
  /** How shutdown closes connections: 1001, or 1012 once `app.realtime.restarting()` was called. */
  shutdown: { code: number, reason: string }
}
