/**
 * The rules a broker keeps, by the names the conformance suite reports (FST_RT_BROKER_RULE) and
 * Broker's TSDoc explains. `order-after-gap` cannot be provoked from outside a broker: a broker
 * that delivers through OrderedDelivery keeps it (its own tests prove it).
 */
export const brokerRules = {
  'dense-offsets': 'every stored message takes the room\'s next offset (1, 2, 3, ...), also when published at once',
  envelope: 'a message\'s text is roomEnvelope(body, room, epoch, offset), its time the publish time; publish() returns it as stored',
  epoch: 'a room\'s epoch stays while its history lives and changes whenever the history may be gone',
  'atomic-publish': 'once publish() resolves, history() holds the message and position() is at or past it',
  'history-order': 'history() returns the kept messages after since, oldest first, at most limit, with the position of the same moment',
  'history-bounds': 'at most history.size messages per room, none older than history.ttlMs',
  'no-partial-recovery': 'the kept history is the unbroken run of the newest messages: a recovery replays all that was missed or nothing',
  unstored: 'a message published with history: false is delivered, not kept, takes no offset and carries history: false',
  'live-delivery': 'a subscribed room\'s messages reach events.message once, in order, with their except; other rooms\' never',
  'order-after-gap': 'a missed message is filled from the history before anything newer, or the room is reported lost',
  errors: 'methods report failure by rejecting; close() resolves, also twice',
  'shared-rooms': 'instances on one backend share positions, history, live messages and presence',
  presence: 'a presence store keeps one entry per room and connection id, lists and counts them, and forgets removed ones'
} as const

export type BrokerRule = keyof typeof brokerRules
