/** Internal: run async work that emits events, and expose it as an async generator of those events. */
export async function* channel<E, R>(work: (emit: (e: E) => void) => Promise<R>): AsyncGenerator<E, R> {
  const queue: E[] = [];
  let wake: (() => void) | null = null;
  type State = { done: false } | { done: true; ok: true; value: R } | { done: true; ok: false; error: unknown };
  let state = { done: false } as State;
  const poke = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  work((e) => {
    queue.push(e);
    poke();
  }).then(
    (value) => {
      state = { done: true, ok: true, value };
      poke();
    },
    (error: unknown) => {
      state = { done: true, ok: false, error };
      poke();
    },
  );
  for (;;) {
    while (queue.length > 0) yield queue.shift()!;
    const s = state as State;
    if (s.done) {
      if (s.ok) return s.value;
      throw s.error;
    }
    await new Promise<void>((r) => (wake = r));
  }
}

/** Internal: drive a generator to completion, handing each event to a callback. */
export async function drain<E, R>(gen: AsyncGenerator<E, R>, onEvent?: (e: E) => void): Promise<R> {
  for (;;) {
    const r = await gen.next();
    if (r.done) return r.value;
    onEvent?.(r.value);
  }
}
