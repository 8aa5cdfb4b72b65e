/**
 * Internal: a set of output files written as temporary files beside their final paths, renamed
 * into place together at the end (commit) or removed (rollback). A process `exit` hook removes
 * any temporary file left when the process ends before either (uncaught error, process.exit on a
 * second Ctrl-C).
 */
import { unlinkSync } from "node:fs";
import { promises as fsp } from "node:fs";
import { tempPathFor } from "../node/files.js";

export class OutputTransaction {
  /** final path -> temp path, in the order they were added. */
  private readonly temps = new Map<string, string>();
  /** Scratch files: removed on commit and on rollback. */
  private readonly scratch = new Set<string>();
  private closed = false;
  private readonly exitHook = (): void => {
    for (const t of [...this.temps.values(), ...this.scratch]) {
      try {
        unlinkSync(t);
      } catch {
        /* already gone */
      }
    }
  };

  constructor() {
    process.on("exit", this.exitHook);
  }

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
      this.temps.set(finalPath, t);
    }
    return t;
  }

  /** A scratch file beside `near` (same folder), removed on commit and rollback. */
  scratchFor(near: string): string {
    if (this.closed) throw new Error("output transaction already closed");
    const t = tempPathFor(near);
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
      await fsp.rename(this.temps.get(final)!, final);
      this.temps.delete(final);
    }
    await Promise.all([...this.scratch].map((t) => fsp.rm(t, { force: true }).catch(() => {})));
    this.scratch.clear();
    process.off("exit", this.exitHook);
  }

  /**
   * Remove every temporary file. The exit hook stays installed (a kernel copy still running may
   * recreate nothing, but may still hold a file) until {@link release}.
   */
  async rollback(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.temps.values(), ...this.scratch].map((t) => fsp.rm(t, { force: true }).catch(() => {})));
  }

  /** After a rollback, once no background work can touch the temporary paths: remove them again and drop the exit hook. */
  async release(): Promise<void> {
    await this.rollback();
    this.temps.clear();
    this.scratch.clear();
    process.off("exit", this.exitHook);
  }

  /** Remove one temporary path that was created after a rollback started (late copy). */
  static async discard(path: string): Promise<void> {
    await fsp.rm(path, { force: true }).catch(() => {});
  }
}
