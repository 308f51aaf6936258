import type { NormalizedCompress } from '../options/route.js'

type Params = Map<string, string | true>

const KNOWN = new Set(['server_no_context_takeover', 'client_no_context_takeover', 'server_max_window_bits', 'client_max_window_bits'])
const BITS = /^(?:[89]|1[0-5])$/

/** Splits a Sec-WebSocket-Extensions header into permessage-deflate offers; a malformed offer is null. */
function deflateOffers (header: string): Array<Params | null> {
  const offers: Array<Params | null> = []
  for (const element of header.split(',')) {
    const [name, ...rest] = element.split(';').map((part) => part.trim())
    if (name !== 'permessage-deflate') continue
    const params: Params = new Map()
    let valid = true
    for (const part of rest) {
      const eq = part.indexOf('=')
      const key = (eq === -1 ? part : part.slice(0, eq)).trim()
      let value: string | true = eq === -1 ? true : part.slice(eq + 1).trim()
      if (typeof value === 'string' && value.length > 1 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      // RFC 7692 §7: unknown or repeated parameters decline the offer.
      if (!KNOWN.has(key) || params.has(key)) valid = false
      params.set(key, value)
    }
    offers.push(valid ? params : null)
  }
  return offers
}

function accept (offer: Params, route: NormalizedCompress): string | null {
  const response = ['permessage-deflate']
  for (const flag of ['server_no_context_takeover', 'client_no_context_takeover']) {
    if (offer.has(flag) && offer.get(flag) !== true) return null
  }
  const serverBits = offer.get('server_max_window_bits')
  // A value is required (RFC 7692 §7.1.2.1); 8 is declined as aiohttp does (zlib cannot honour it).
  if (serverBits !== undefined && (serverBits === true || !BITS.test(serverBits) || serverBits === '8')) return null
  const clientBits = offer.get('client_max_window_bits')
  if (typeof clientBits === 'string' && !BITS.test(clientBits)) return null

  // aiohttp's order (window bits, then no_context_takeover): ws echoes this string's order, and
  // clients comparing against aiohttp see the offer `...=9; server_no_context_takeover` returned as is.
  const server = Math.min(serverBits === undefined ? 15 : Number(serverBits), route.serverMaxWindowBits)
  if (server < 15) response.push(`server_max_window_bits=${server}`)
  if (offer.has('server_no_context_takeover') || route.serverNoContextTakeover) response.push('server_no_context_takeover')
  if (route.clientNoContextTakeover) response.push('client_no_context_takeover')
  if (route.clientMaxWindowBits < 15) {
    // The client's window can only be limited if it said it supports the parameter.
    if (clientBits === undefined) return null
    const client = Math.min(clientBits === true ? 15 : Number(clientBits), route.clientMaxWindowBits)
    response.push(`client_max_window_bits=${client}`)
  }
  return response.join('; ')
}

/**
 * Negotiates permessage-deflate for one route: the response parameters for the first acceptable
 * offer (RFC 7692 with aiohttp's choices), or null when no offer is acceptable. Never an error.
 */
export function negotiateDeflate (header: string | undefined, route: NormalizedCompress): string | null {
  if (header === undefined) return null
  for (const offer of deflateOffers(header)) {
    if (offer === null) continue
    const response = accept(offer, route)
    if (response !== null) return response
  }
  return null
}
