import type {} from '@fastify/websocket'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { errors } from '../errors.js'
import type { RouteSettings } from '../options/route.js'
import { kOfferedExtensions, kProtocol } from '../symbols.js'
import { negotiateDeflate } from './compression.js'
import { checkOrigin } from './origin.js'
import { chooseProtocol, parseOffer } from './protocols.js'
import { checkHandshake } from './validate.js'
import { checkSameOrigin } from './guard.js'
import type { Handshakes } from './handshakes.js'
import type { RealtimeMetrics } from '../metrics.js'

type RawWithHandshake = FastifyRequest['raw'] & { [kProtocol]?: string, [kOfferedExtensions]?: string }

/**
 * The onRequest hook of one realtime route: runs before the upgrade, after the app's own
 * onRequest hooks, so it can answer with a real HTTP status. It calls back synchronously unless the
 * route's allowedOrigins function is asynchronous: a handshake is hot enough that an extra promise
 * and turn per connection show.
 */
export function handshakeHook (settings: RouteSettings, handshakes: Handshakes, metrics: RealtimeMetrics) {
  /** Limits, subprotocol and compression: what follows the origin check. */
  function afterOrigin (request: FastifyRequest): void {
    // From here on the handshake holds a connection slot until its socket closes.
    handshakes.reserve(request)

    const raw = request.raw as RawWithHandshake
    const header = request.headers['sec-websocket-protocol']
    const offered = parseOffer(header)
    // Tokens travel in this header (`['access_token', token]`): what it offered is never repeated, only counted.
    if (offered === null) throw new errors.FST_RT_BAD_HANDSHAKE('the Sec-WebSocket-Protocol header must be a comma-separated list of tokens')
    const protocol = chooseProtocol(offered, settings.protocols)
    if (protocol !== null) {
      raw[kProtocol] = protocol
    } else if (offered.length > 0) {
      if (settings.requireProtocol) throw new errors.FST_RT_NO_SUBPROTOCOL(offered.length, settings.protocols.join(', ') || 'none')
      request.log.warn({ offered: offered.length, supported: settings.protocols }, 'realtime: no common subprotocol, upgrading without one')
    }

    // ws negotiates whatever header it sees, so it is shown only this route's accepted offer.
    if (settings.compress !== null) {
      const accepted = negotiateDeflate(raw[kOfferedExtensions], settings.compress)
      if (accepted !== null) raw.headers['sec-websocket-extensions'] = accepted
    }
  }

  return function realtimeHandshake (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (!request.ws) {
      done()
      return
    }
    let pending: void | Promise<void> = undefined // eslint-disable-line no-undef-init -- TypeScript needs it set on every path
    try {
      const problem = checkHandshake(request.headers)
      if (problem !== null) {
        if (problem.headers !== undefined) reply.headers(problem.headers)
        throw new errors.FST_RT_BAD_HANDSHAKE(problem.message)
      }
      if (settings.allowedOrigins === null) checkSameOrigin(request, metrics)
      else pending = checkOrigin(request, settings.allowedOrigins, metrics)
      if (pending === undefined) afterOrigin(request)
    } catch (error) {
      done(error as Error)
      return
    }
    if (pending === undefined) done()
    else pending.then(() => { afterOrigin(request) }).then(() => { done() }, done)
  }
}
