/** Whether a handler's result is a promise (or any thenable) to wait for, rather than a value to use now. */
export function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
