/** Counters and gauges of one plugin instance, shared by the connections, the router and the hub. */
export interface RealtimeMetrics {
  /** Open connections by route URL (a gauge). */
  readonly connections: Record<string, number>
  /** Handshakes past the limit check, not yet upgraded or ended: each holds a connection slot (a gauge). */
  handshakes: number
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  /** Messages refused by a contract route's schemas (or not JSON / not an envelope). */
  validationErrors: number
  /** Refused `$auth` tokens, auth timeouts and refused handshake tokens. */
  authFailures: number
  /** Connections dropped because no data arrived within half the heartbeat after a ping. */
  heartbeatKills: number
  /** Connections closed because their unsent bytes passed the limit (4008). */
  slowConsumerCloses: number
  /** Messages refused by the per-connection message rate. */
  rateLimitHits: number
  /** Connections closed with 1011 after a failure no rule foresaw while handling their messages (a bug: see the log). */
  internalErrors: number
  /** Handshakes refused: origin (403), over the connection limits (503 / 429), and sockets dropped by handshakeTimeout (no request head, or no upgrade, in time). */
  readonly refused: { origin: number, maxConnections: number, maxConnectionsPerIp: number, handshakeTimeout: number }
}

export function createMetrics (): RealtimeMetrics {
  return {
    connections: Object.create(null) as Record<string, number>,
    handshakes: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    validationErrors: 0,
    authFailures: 0,
    heartbeatKills: 0,
    slowConsumerCloses: 0,
    rateLimitHits: 0,
    internalErrors: 0,
    refused: { origin: 0, maxConnections: 0, maxConnectionsPerIp: 0, handshakeTimeout: 0 }
  }
}

function line (name: string, help: string, type: 'counter' | 'gauge', samples: Array<[labels: string, value: number]>): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${samples.map(([labels, value]) => `${name}${labels} ${value}`).join('\n')}\n`
}

function label (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** The metrics in Prometheus' text exposition format (version 0.0.4). */
export function prometheusText (metrics: RealtimeMetrics, extra: { published: number, delivered: number }): string {
  const routes = Object.entries(metrics.connections)
  return [
    line('realtime_connections', 'Open WebSocket connections by route.', 'gauge', routes.length === 0 ? [['', 0]] : routes.map(([route, count]) => [`{route="${label(route)}"}`, count])),
    line('realtime_handshakes_in_progress', 'Handshakes holding a connection slot before their upgrade.', 'gauge', [['', metrics.handshakes]]),
    line('realtime_messages_total', 'Messages received and sent.', 'counter', [['{direction="in"}', metrics.messagesIn], ['{direction="out"}', metrics.messagesOut]]),
    line('realtime_bytes_total', 'Message bytes received and sent.', 'counter', [['{direction="in"}', metrics.bytesIn], ['{direction="out"}', metrics.bytesOut]]),
    line('realtime_validation_errors_total', 'Messages refused by validation.', 'counter', [['', metrics.validationErrors]]),
    line('realtime_auth_failures_total', 'Refused or missing tokens.', 'counter', [['', metrics.authFailures]]),
    line('realtime_heartbeat_kills_total', 'Connections dropped by the heartbeat.', 'counter', [['', metrics.heartbeatKills]]),
    line('realtime_slow_consumer_closes_total', 'Connections closed for unsent bytes over the limit.', 'counter', [['', metrics.slowConsumerCloses]]),
    line('realtime_rate_limit_hits_total', 'Messages refused by the message rate.', 'counter', [['', metrics.rateLimitHits]]),
    line('realtime_internal_errors_total', 'Connections closed with 1011 after an unexpected failure.', 'counter', [['', metrics.internalErrors]]),
    line('realtime_handshakes_refused_total', 'Handshakes refused before the upgrade.', 'counter',
      Object.entries(metrics.refused).map(([reason, value]) => [`{reason="${reason}"}`, value])),
    line('realtime_room_messages_published_total', 'Room messages published.', 'counter', [['', extra.published]]),
    line('realtime_room_deliveries_total', 'Room messages delivered to local members.', 'counter', [['', extra.delivered]])
  ].join('')
}
