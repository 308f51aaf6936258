// The typed chat's page logic, typed by the server's contract (imported as a type only).
import { RealtimeClient, type SnapshotPosition } from 'fastify-realtime/client'
import type { RoomSnapshot, HistoryStamp, ServerMessage } from 'fastify-realtime'
import type { chat } from './contract.js'

type Chat = typeof chat
type Kept = ServerMessage<Chat> & HistoryStamp

export interface ChatView {
  showMessages (messages: Kept[]): void
  addMessage (user: string, text: string, at: number): void
  showTyping (user: string): void
  showOnline (users: Array<{ user: string | null, device: string }>): void
}

export async function openChat (token: string, room: string, view: ChatView): Promise<RealtimeClient<Chat>> {
  const client = new RealtimeClient<Chat>({ url: `wss://${location.host}/chat?device=web`, protocols: ['access_token', token] })
  client.on('message', ({ user, text, at }) => { view.addMessage(user, text, at) })
  client.on('typing', ({ user }) => { view.showTyping(user) })
  client.onPresence(() => { void refreshOnline(token, room, view) })

  // Snapshot, then stream: the history up to a position, then everything after it; called again
  // by the client whenever the room cannot be recovered.
  const snapshot = async (): Promise<SnapshotPosition> => {
    const response = await fetch(`/snapshot?room=${room}`, { headers: { authorization: `Bearer ${token}` } })
    const loaded: RoomSnapshot<Kept[]> = await response.json()
    view.showMessages(loaded.state)
    return loaded
  }
  await client.join(room, { meta: { device: 'web' }, snapshot })
  await refreshOnline(token, room, view)
  return client
}

async function refreshOnline (token: string, room: string, view: ChatView): Promise<void> {
  const response = await fetch(`/online?room=${room}`, { headers: { authorization: `Bearer ${token}` } })
  const entries: Array<{ user: string | null, meta: { device: string } }> = await response.json()
  view.showOnline(entries.map((entry) => ({ user: entry.user, device: entry.meta.device })))
}

/** Sends a message; while typing, tells the others at most every 2 s, volatile (never queued offline). */
export function composer (client: RealtimeClient<Chat>, room: string): { say (text: string): void, typing (): void } {
  let typedAt = 0
  return {
    say: (text) => { client.send('say', { room, text }) },
    typing: () => {
      if (Date.now() - typedAt < 2000) return
      typedAt = Date.now()
      client.send('typing', { room }, { volatile: true })
    }
  }
}
