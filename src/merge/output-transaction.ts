/**
 * Internal: a set of output files written as temporary files beside their final paths (named and
 * tracked by the Node edge's one atomic writer, `src/node/temp-files.ts`), renamed into place
 * together at the end (commit) or removed (rollback). Any temporary file left when the process
 * ends before either (uncaught error, process.exit on a second Ctrl-C, SIGTERM, SIGHUP) is removed
 * on the way out; one left by a process killed outright is removed by the next run writing there.
 */
import { promises as fsp } from "node:fs";
import { tempPathFor, trackTemp, untrackTemp } from "../node/temp-files.js";

export class OutputTransaction {
  /** final path -> temp path, in the order they were added. */
  private readonly temps = new Map<string, string>();
  /** Scratch files: removed on commit and on rollback. */
  private readonly scratch = new Set<string>();
  private closed = false;

  /** True once committed or rolled back: no new temporary file may be created. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The temporary path that will become `finalPath` on commit. */
  tempFor(finalPath: string): string {
    if (this.closed) throw new Error("output transaction already closed");
    let t = this.temps.get(finalPath);
    if (!t) {
      t = tempPathFor(finalPath);
      trackTemp(t);
      this.temps.set(finalPath, t);
    }
    return t;
  }

  /** A scratch file beside `near` (same folder), removed on commit and rollback. */
  scratchFor(near: string): string {
    if (this.closed) throw new Error("output transaction already closed");
    const t = tempPathFor(near);
    trackTemp(t);
    this.scratch.add(t);
    return t;
  }

  /** Temporary paths created so far. */
  tempPaths(): string[] {
    return [...this.temps.values()];
  }

  /**
   * Rename every temporary file onto its final path, in the given order (final paths; any not
   * listed go first). Renames are atomic one by one; the `.onnx` file should be last so a model
   * never names data that is not in place yet.
   */
  async commit(last: string[] = []): Promise<void> {
    const order = [...this.temps.keys()].filter((k) => !last.includes(k));
    order.push(...last.filter((k) => this.temps.has(k)));
    this.closed = true;
    for (const final of order) {
      const t = this.temps.get(final)!;
      await fsp.rename(t, final);
      untrackTemp(t);
      this.temps.delete(final);
    }
    await Promise.all([...this.scratch].map((t) => fsp.rm(t, { force: true }).catch(() => {})));
    this.untrackAll();
  }

  private untrackAll(): void {
    for (const t of [...this.temps.values(), ...this.scratch]) untrackTemp(t);
    this.temps.clear();
    this.scratch.clear();
  }

  /**
   * Remove every temporary file. They stay tracked for removal at exit (a kernel copy still running may
   * recreate nothing, but may still hold a file) until {@link release}.
   */
  async rollback(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.temps.values(), ...this.scratch].map((t) => fsp.rm(t, { force: true }).catch(() => {})));
  }

  /** After a rollback, once no background work can touch the temporary paths: remove them again and drop the exit hook. */
  async release(): Promise<void> {
    await this.rollback();
    this.untrackAll();
  }

  /** Remove one temporary path that was created after a rollback started (late copy). */
  static async discard(path: string): Promise<void> {
    await fsp.rm(path, { force: true }).catch(() => {});
  }
}
