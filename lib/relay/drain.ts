// The relay's shutdown state: whether it still takes work, what is in flight, and waiting for it to end.

export interface RelayDrain {
  /** True once a drain began: health checks fail, new tunnels and requests are refused. */
  readonly draining: boolean;
  /** Requests and upgrades in flight. */
  readonly inFlight: number;
  /** Aborted when the drain begins; a JSON watch then ends at its next event (kubectl watches again). */
  readonly watchEnd: AbortSignal;
  /** Counts one request in flight; call the returned function (once) when it is over. */
  track(): () => void;
  begin(): void;
  /** Resolves true when nothing is in flight any more, false if `deadlineMs` passed first. */
  settled(deadlineMs: number): Promise<boolean>;
}

export function createRelayDrain(): RelayDrain {
  let draining = false;
  let inFlight = 0;
  const watchEnd = new AbortController();
  const idle = new Set<() => void>();
  return {
    get draining() { return draining; },
    get inFlight() { return inFlight; },
    watchEnd: watchEnd.signal,
    track() {
      inFlight += 1;
      let done = false;
      return function requestOver() {
        if (done) return;
        done = true;
        inFlight -= 1;
        if (inFlight === 0) for (const wake of idle) wake();
      };
    },
    begin() {
      if (draining) return;
      draining = true;
      watchEnd.abort();
    },
    settled(deadlineMs) {
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const finish = (ok: boolean) => {
          clearTimeout(timer);
          idle.delete(wake);
          resolve(ok);
        };
        const wake = () => finish(true);
        const timer = setTimeout(() => finish(false), deadlineMs);
        idle.add(wake);
      });
    },
  };
}
