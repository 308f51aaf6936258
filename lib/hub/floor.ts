import type { Position, RoomMessage } from './broker.js'

/**
 * A member's floor in one room: the epoch and offset of the last stored message it was given (or
 * the position it joined, recovered or was told `$lost` at). Everything at or below it the member
 * has, or loads itself, so nothing there is delivered again, whichever path brings it: live, a
 * catch-up, a recovery, or a copy that was still on its way when the member joined.
 */
export interface Floor {
  epoch: string
  offset: number
}

/** A floor at `position`. */
export function floorAt (position: Position): Floor {
  return { epoch: position.epoch, offset: position.offset }
}

/**
 * Whether `message` is new to a member at `floor`, raising the floor past it if so. Unstored
 * messages (history: false) are never copies of one another and leave the floor; a stored message
 * of another epoch starts that epoch (the room's history was lost and begins again).
 */
export function passFloor (floor: Floor | undefined, message: RoomMessage): boolean {
  if (floor === undefined || message.history === false) return true
  if (message.epoch === floor.epoch) {
    if (message.offset <= floor.offset) return false
  } else {
    floor.epoch = message.epoch
  }
  floor.offset = message.offset
  return true
}
