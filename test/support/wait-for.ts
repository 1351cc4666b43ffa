// Waiting in tests for a condition or an event, never for a length of time.

/** First poll comes quickly; later ones back off so slow checks (a CLI run, a fetch) do not load the machine. */
const FIRST_POLL_MS = 5;
const MAX_POLL_MS = 100;

/**
 * Polls `check` until it returns true; throws an Error naming `what` once `timeoutMs` has passed.
 * An error thrown by `check` ends the wait at once (a crashed process need not run out the clock).
 */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  // performance.now(), not Date.now(): a test may have frozen the Date clock with setSystemTime.
  const deadline = performance.now() + timeoutMs;
  let pollMs = FIRST_POLL_MS;
  while (!(await check())) {
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    pollMs = Math.min(pollMs * 2, MAX_POLL_MS);
  }
}

/** Rejects with an Error naming `what` if `promise` has not settled within `timeoutMs`. */
export function within<T>(what: string, promise: Promise<T>, timeoutMs = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
