import type { IncomingHttpHeaders } from 'node:http'

const KEY = /^[+/0-9A-Za-z]{22}==$/
export const SUPPORTED_VERSIONS = '13, 8'

/** A header value as it may be shown back to the client: quoted and cut short. */
export function shown (value: string | undefined): string {
  if (value === undefined) return 'none'
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)
}

function tokens (value: string | undefined): string[] {
  return value === undefined ? [] : value.split(',').map((token) => token.trim().toLowerCase())
}

export interface HandshakeProblem {
  message: string
  /** Extra response headers that help the client (RFC 6455 §4.4). */
  headers?: Record<string, string>
}

/**
 * Checks the opening handshake in aiohttp's order (Upgrade, Connection, version, key) and says
 * what is wrong with the first failing header, or returns null.
 */
export function checkHandshake (headers: IncomingHttpHeaders): HandshakeProblem | null {
  if (headers.upgrade?.trim().toLowerCase() !== 'websocket') {
    return { message: `the Upgrade header must be "websocket", got ${shown(headers.upgrade)}` }
  }
  if (!tokens(headers.connection).includes('upgrade')) {
    return { message: `the Connection header must contain the "upgrade" token, got ${shown(headers.connection)}` }
  }
  // app.injectWS() sets the version as a number.
  const given: unknown = headers['sec-websocket-version']
  const version = given === undefined ? undefined : String(given)
  if (version !== '13' && version !== '8') {
    return {
      message: `unsupported Sec-WebSocket-Version ${shown(version)}: supported versions are ${SUPPORTED_VERSIONS}`,
      headers: { 'sec-websocket-version': SUPPORTED_VERSIONS }
    }
  }
  const key = headers['sec-websocket-key']
  if (key === undefined || !KEY.test(key)) {
    return { message: `the Sec-WebSocket-Key header must be 16 bytes in base64, got ${shown(key)}` }
  }
  return null
}

/** Whether a plain HTTP request was meant as a WebSocket handshake (and so deserves a 400, not a 426). */
export function looksLikeHandshake (headers: IncomingHttpHeaders): boolean {
  return headers.upgrade !== undefined || headers['sec-websocket-key'] !== undefined
}
