// Racing waits where only a found value wins: "a tunnel here, or another replica's".

/** The first promise to resolve with a value; undefined once all resolved (or rejected) without one. */
export function firstDefined<T>(promises: Promise<T | undefined>[]): Promise<T | undefined> {
  return new Promise((resolve) => {
    let left = promises.length;
    if (left === 0) resolve(undefined);
    for (const p of promises) {
      void p.then((value) => {
        if (value !== undefined) resolve(value);
        else if (--left === 0) resolve(undefined);
      }, () => {
        if (--left === 0) resolve(undefined);
      });
    }
  });
}
