// The demo chat page: plain ES modules, no build step. The client comes from the package's dist/,
// which the server serves under /lib/.
import { RealtimeClient } from '/lib/client/index.js'

// The demo user table of server.js. Only a demo ships tokens to the page.
const DEMO_TOKENS = { ada: 'ada-token', bob: 'bob-token', cy: 'cy-token' }

const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected'
}

const $ = (id) => document.getElementById(id)

/** @type {RealtimeClient | null} */
let client = null
/** Who is signed in: { user, room, token, guest }. */
let session = null
/** The room's members, one entry per connection: connectionId → user. */
const presence = new Map()
/** Notices that arrive while a `who` request is out, replayed on its answer. */
let presenceBacklog = null
/** The messages shown, in order: { key, epoch, offset, element }. */
let shown = []
/** True between the room's join reply and the next disconnect: only then may `say` go out. */
let inRoom = false
/** The first join of this session has been answered: later join replies are rejoins. */
let joinedOnce = false

// ---- signing in ----

$('name').addEventListener('input', (event) => { event.target.value = event.target.value.toLowerCase() })

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const name = $('name').value.trim()
  if (name === '') {
    showLoginError('Pick a name, or one of the demo users.')
    return
  }
  void start(name, null)
})

for (const button of document.querySelectorAll('[data-user]')) {
  button.addEventListener('click', () => {
    if (!$('room').reportValidity()) return
    void start(button.dataset.user, DEMO_TOKENS[button.dataset.user])
  })
}

$('sign-out').addEventListener('click', () => {
  client?.close()
  client = null
  session = null
  $('chat').hidden = true
  $('login').hidden = false
  $('me').hidden = true
  renderState('idle')
})

function showLoginError (text) {
  $('login-error').textContent = text
}

/** POST /login: a guest gets a token for a free name, or its own token back. */
async function login (name, token) {
  const response = await fetch('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(token === null ? { name } : { name, token })
  })
  const body = await response.json().catch(() => ({}))
  if (!response.ok) throw Object.assign(new Error(body.error ?? body.message ?? `login failed (${response.status})`), { status: response.status })
  return body.token
}

/**
 * The client's token provider, called before every (re)connect. A demo user's token never changes.
 * A guest's lives in the server's memory: after a restart the name is free again and the guest
 * logs in anew, so the page survives a restart without asking anyone anything.
 */
async function tokenFor () {
  if (!session.guest) return session.token
  try {
    session.token = await login(session.user, session.token)
  } catch (error) {
    if (error.status === 409) {
      // Someone took the name while the server had forgotten us: stop, and say so.
      setTimeout(() => {
        client?.close()
        notice(`Signed out: ${error.message}. Sign in again.`, 'warn')
      })
    }
    throw error
  }
  return session.token
}

async function start (user, demoToken) {
  const room = $('room').value
  showLoginError('')
  let token = demoToken
  if (token === null) {
    try {
      token = await login(user, null)
    } catch (error) {
      showLoginError(error.message)
      return
    }
  }
  session = { user, room, token, guest: demoToken === null }
  joinedOnce = false
  presence.clear()
  clearMessages()
  hideNotice()
  $('room-name').textContent = room
  $('me').textContent = `signed in as ${user}`
  $('me').hidden = false
  $('login').hidden = true
  $('chat').hidden = false
  $('text').focus()

  const protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  client = new RealtimeClient({
    url: `${protocol}//${location.host}/chat`,
    token: tokenFor,
    // Back quickly after a restart: at most 4 s between attempts.
    backoff: { baseMs: 250, capMs: 4000 },
    pingIntervalMs: 20_000,
    pongTimeoutMs: 5_000
  })
  client.onState(onState)
  client.onJoin(onJoin)
  client.onLost((lost) => {
    // The client reloads the room through loadSnapshot by itself.
    if (lost.room === session?.room) notice('The server lost some messages of this room: reloaded its history.', 'warn')
  })
  client.on('typing', ({ user }) => { showTyping(user) })
  client.onPresence(onPresence)
  client.on('message', (data, meta) => { addMessage(data, meta) })
  client.onError((error) => {
    // Error envelopes from the server are worth showing; a failed attempt while the server is
    // down (the token fetch) is not: the state already says "Reconnecting".
    if (error.code === 'FST_RT_CLIENT_SERVER_ERROR') notice(error.message, 'warn')
    else console.debug('realtime:', error)
  })
  client.onClose((info) => {
    if (!info.willReconnect && info.code !== 1000) notice(`Disconnected for good (${info.code}${info.reason ? `: ${info.reason}` : ''}).`, 'warn')
  })
  onState(client.state)
}

// ---- the connection ----

function onState (state) {
  renderState(state)
  if (state !== 'open') {
    inRoom = false
    renderCompose()
    return
  }
  // Open: join the room the first time; after a reconnect the client rejoins it by itself.
  if (!client.joinedRooms.includes(session.room)) {
    const current = session
    // Snapshot, then stream: the history up to a position, then everything after it, live.
    client.join(current.room, { snapshot: () => loadSnapshot(current) }).catch((error) => { notice(`Could not join #${current.room}: ${error.message}`, 'warn') })
  }
}

function renderState (state) {
  const element = $('state')
  element.dataset.state = state
  element.textContent = STATE_TEXT[state]
  document.body.dataset.state = state
}

/** Every join reply: the first join, and each rejoin after a reconnect with its `recovered` flag. */
function onJoin (outcome) {
  if (outcome.room !== session?.room) return
  inRoom = true
  renderCompose()
  void refreshPresence()
  const rejoin = joinedOnce
  joinedOnce = true
  // The first join goes on from the snapshot just loaded: nothing to say.
  if (!rejoin) return
  // Recovered: the missed messages follow this reply. Not: the client reloads through loadSnapshot.
  if (outcome.recovered === true) notice('Reconnected: caught up with everything you missed.', 'info')
  else notice('Reconnected, but the server could not replay what you missed (it restarted?): history reloaded.', 'warn')
}

// ---- messages ----

/**
 * The client's snapshot loader: the room's last messages up to a position, from GET /snapshot.
 * The client calls it before it joins and whenever the room cannot be recovered, then goes on from
 * that position: no message is missed, none is shown twice.
 */
async function loadSnapshot (current) {
  const query = new URLSearchParams({ room: current.room })
  const response = await fetch(`/snapshot?${query}`, { headers: { authorization: `Bearer ${current.token}` } })
  if (!response.ok) throw new Error(`Could not load the history: HTTP ${response.status}`)
  const snapshot = await response.json()
  if (session === current) {
    clearMessages()
    for (const message of snapshot.state) addMessage(message.data, message)
    if (shown.length === 0) $('messages').dataset.empty = 'No messages yet. Say hello!'
  }
  return snapshot
}

function clearMessages () {
  shown = []
  $('messages').replaceChildren()
}

/** Shows a room message once, in offset order within its epoch. */
function addMessage (data, meta) {
  if (meta.room !== session?.room) return
  const key = `${meta.epoch}:${meta.offset}`
  if (shown.some((item) => item.key === key)) return
  const item = { key, epoch: meta.epoch, offset: meta.offset, element: renderMessage(data) }
  let index = shown.length
  while (index > 0 && shown[index - 1].epoch === item.epoch && shown[index - 1].offset > item.offset) index--
  const list = $('messages')
  list.insertBefore(item.element, shown[index]?.element ?? null)
  shown.splice(index, 0, item)
  delete list.dataset.empty
  if (index === shown.length - 1) item.element.scrollIntoView({ block: 'end' })
}

function renderMessage ({ user, text, at }) {
  const li = document.createElement('li')
  if (user === session.user) li.classList.add('mine')
  const head = document.createElement('div')
  head.className = 'head'
  const name = document.createElement('strong')
  name.textContent = user
  const time = document.createElement('time')
  time.dateTime = new Date(at).toISOString()
  time.textContent = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  head.append(name, time)
  const body = document.createElement('p')
  body.textContent = text
  li.append(head, body)
  return li
}

$('compose').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = $('text').value.trim()
  if (text === '' || !inRoom) return
  // The server publishes it to the room, this page included: it shows up when it comes back.
  client.send('say', { room: session.room, text })
  $('text').value = ''
})

// ---- typing ----

let typingSentAt = 0
$('text').addEventListener('input', () => {
  // At most one every 2 s; volatile: never queued while offline, dropped if the socket is busy.
  if (!inRoom || Date.now() - typingSentAt < 2000) return
  typingSentAt = Date.now()
  client.send('typing', { room: session.room }, { volatile: true })
})

const typingTimers = new Map()
function showTyping (user) {
  clearTimeout(typingTimers.get(user))
  typingTimers.set(user, setTimeout(() => { typingTimers.delete(user); renderTyping() }, 3000))
  renderTyping()
}

function renderTyping () {
  const users = [...typingTimers.keys()]
  $('typing').textContent = users.length === 0 ? '' : `${users.join(', ')} ${users.length === 1 ? 'is' : 'are'} typing…`
}

function renderCompose () {
  $('send').disabled = !inRoom
  $('text').placeholder = inRoom ? 'Say something…' : 'Waiting for the connection…'
}

// ---- presence ----

/** Asks who is in the room; notices that arrive meanwhile are applied on top of the answer. */
async function refreshPresence () {
  const room = session.room
  const backlog = []
  presenceBacklog = backlog
  let entries
  try {
    entries = await client.request('who', { room })
  } catch (error) {
    console.debug('who failed:', error)
    return
  } finally {
    if (presenceBacklog === backlog) presenceBacklog = null
  }
  if (session?.room !== room) return
  presence.clear()
  for (const entry of entries) presence.set(entry.connectionId, entry.user)
  for (const change of backlog) applyPresence(change)
  renderOnline()
}

function onPresence (change) {
  if (change.room !== session?.room) return
  presenceBacklog?.push(change)
  applyPresence(change)
  renderOnline()
}

function applyPresence ({ event, connectionId, userId }) {
  if (event === 'join') presence.set(connectionId, userId ?? 'anonymous')
  else presence.delete(connectionId)
}

function renderOnline () {
  const tabs = new Map()
  for (const user of presence.values()) tabs.set(user, (tabs.get(user) ?? 0) + 1)
  const users = [...tabs.keys()].sort()
  $('online-count').textContent = String(users.length)
  $('online').replaceChildren(...users.map((user) => {
    const li = document.createElement('li')
    li.dataset.user = user
    li.textContent = user
    if (user === session.user) li.append(Object.assign(document.createElement('em'), { textContent: ' (you)' }))
    const count = tabs.get(user)
    if (count > 1) li.append(Object.assign(document.createElement('small'), { textContent: ` ${count} tabs` }))
    return li
  }))
}

// ---- notices ----

let noticeTimer = null

function notice (text, kind) {
  clearTimeout(noticeTimer)
  const element = $('notice')
  element.dataset.kind = kind
  $('notice-text').textContent = text
  element.hidden = false
  // Good news goes away by itself; a warning stays until dismissed.
  if (kind === 'info') noticeTimer = setTimeout(hideNotice, 8000)
}

function hideNotice () {
  $('notice').hidden = true
}

$('notice-close').addEventListener('click', hideNotice)
