/**
 * Internal: the one callback-to-async-iterator of verakit. {@link eventStream} runs a job that reports
 * events through a callback as an async generator of those events whose return value is the job's result;
 * stopping the iteration early cancels the job (its AbortSignal) and waits for it to settle. {@link drain}
 * is the promise form: events go to a callback, and a throwing callback cancels the job. Every long
 * operation with progress events (merges, Hub push and pull) uses them.
 */

/** A small async queue turning callbacks into an async iterator. */
class EventQueue<T> {
  private items: T[] = [];
  private waiting: ((v: IteratorResult<T>) => void) | undefined;
  private done = false;
  push(v: T): void {
    if (this.done) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: v, done: false });
    } else this.items.push(v);
  }
  close(): void {
    this.done = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: undefined as never, done: true });
    }
  }
  next(): Promise<IteratorResult<T>> {
    const v = this.items.shift();
    if (v !== undefined) return Promise.resolve({ value: v, done: false });
    if (this.done) return Promise.resolve({ value: undefined as never, done: true });
    return new Promise((r) => (this.waiting = r));
  }
}

/** Parameters of {@link eventStream}. */
export interface EventStreamParams<E, R> {
  /** The job: reports events through `emit`, stops when `signal` aborts. */
  run: (signal: AbortSignal, emit: (e: E) => void) => Promise<R>;
  /** The caller's cancellation. @default none */
  signal?: AbortSignal;
}

/** The job's events as an async generator returning its result. */
export async function* eventStream<E, R>(params: EventStreamParams<E, R>): AsyncGenerator<E, R, void> {
  const inner = new AbortController();
  const onOuter = (): void => inner.abort();
  params.signal?.addEventListener("abort", onOuter);
  if (params.signal?.aborted) inner.abort();
  const queue = new EventQueue<E>();
  let settled = false;
  let failure: unknown;
  let result: R | undefined;
  const job = params
    .run(inner.signal, (e) => queue.push(e))
    .then(
      (r) => {
        settled = true;
        result = r;
        queue.close();
      },
      (e) => {
        settled = true;
        failure = e;
        queue.close();
      },
    );
  try {
    for (;;) {
      const r = await queue.next();
      if (r.done) break;
      yield r.value;
    }
    await job;
    if (failure !== undefined) throw failure;
    return result!;
  } finally {
    params.signal?.removeEventListener("abort", onOuter);
    if (!settled) {
      inner.abort();
      await job;
    }
  }
}

/**
 * {@link eventStream} for an operation that takes its AbortSignal in its params: `run` gets `params` with a
 * signal that aborts when the caller's does or when the iteration stops early.
 */
export function operationStream<P extends { signal?: AbortSignal }, E, R>(
  params: P,
  run: (params: P, emit: (e: E) => void) => Promise<R>,
): AsyncGenerator<E, R, void> {
  return eventStream({
    run: (signal, emit) => run({ ...params, signal }, emit),
    ...(params.signal ? { signal: params.signal } : {}),
  });
}

/**
 * Drive a generator to completion, handing each event to `onEvent`; returns its result. A throwing
 * `onEvent` stops the generator (cancelling an {@link eventStream} job) and is rethrown.
 */
export async function drain<E, R>(it: AsyncGenerator<E, R, void>, onEvent?: (e: E) => void): Promise<R> {
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      onEvent?.(r.value);
    }
  } catch (e) {
    await it.return(undefined as never).catch(() => {});
    throw e;
  }
}
