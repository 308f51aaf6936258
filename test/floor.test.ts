import t from 'tap'
import { floorAt, passFloor } from '../lib/hub/floor.js'
import type { RoomMessage } from '../lib/hub/broker.js'
import './support/process-guard.js'

const message = (epoch: string, offset: number, extra: Partial<RoomMessage> = {}): RoomMessage => ({ room: 'r', epoch, offset, time: 0, text: '{}', ...extra })

t.test('a floor passes what is above it, once, and raises itself', async (t) => {
  const floor = floorAt({ epoch: 'e1', offset: 3 })
  t.notOk(passFloor(floor, message('e1', 2)), 'below')
  t.notOk(passFloor(floor, message('e1', 3)), 'at')
  t.ok(passFloor(floor, message('e1', 4)), 'above')
  t.notOk(passFloor(floor, message('e1', 4)), 'not twice')
  t.ok(passFloor(floor, message('e1', 2, { history: false })), 'an unstored message always passes')
  t.same(floor, { epoch: 'e1', offset: 4 }, 'and leaves the floor')
  t.ok(passFloor(floor, message('e2', 1)), 'another epoch starts again')
  t.same(floor, { epoch: 'e2', offset: 1 })
  t.notOk(passFloor(floor, message('e2', 1)))
  t.ok(passFloor(undefined, message('e1', 1)), 'no floor: everything passes')
})
