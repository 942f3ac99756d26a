// The tests' one polling helper: a test waits on the outcome it expects,
// bounded, instead of sleeping for a fixed window and hoping.

/** What a check returns while the outcome is not there yet. */
type NotYet = undefined | false

/**
 * Calls `check` every `intervalMs` until it returns something other than
 * undefined or false, and resolves with that value (so a check can hand back
 * what it found). After `timeoutMs` it throws an error that names `what`, the
 * outcome waited for. An error thrown by `check` is not retried: it fails the
 * wait at once.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | NotYet | Promise<T | NotYet>,
  timeoutMs = 15_000,
  intervalMs = 50,
): Promise<Exclude<T, NotYet>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value as Exclude<T, NotYet>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
