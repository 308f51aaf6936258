import t from 'tap'
import { isSendableCloseCode, shouldReconnect } from '../lib/close-codes.js'
import { closeCodeOf } from '../lib/errors.js'
import './support/process-guard.js'

// The close-code contract: what may be sent, what an error closes with, what a client reconnects after.
t.test('sendable close codes follow RFC 6455 §7.4', async (t) => {
  for (const code of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]) t.ok(isSendableCloseCode(code), String(code))
  for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000, 1000.5, Number.NaN]) t.notOk(isSendableCloseCode(code), String(code))
})

t.test('connection failure codes are paired with the close code 1006', async (t) => {
  t.equal(closeCodeOf('FST_RT_HEARTBEAT_TIMEOUT'), 1006)
  t.equal(closeCodeOf('FST_RT_PROTOCOL_ERROR'), 1002)
  t.equal(closeCodeOf('FST_RT_CONCURRENT_RECEIVE'), undefined)
})

t.test('shouldReconnect follows the close-code contract', async (t) => {
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 4000, 4008, 4401, 4499]) t.ok(shouldReconnect(code), `${code} reconnects`)
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 3999, 4500, 4501, 4999]) t.notOk(shouldReconnect(code), `${code} does not`)
})
