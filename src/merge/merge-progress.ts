/** Internal: the `progress` events of a merge, on every merged weight and every 250 ms. */
import type { MergeEvent } from "./core/merge-report.js";

/** Parameters of {@link MergeProgress}' constructor. */
export interface MergeProgressParams {
  emit: (e: MergeEvent) => void;
  /** Weights to merge. */
  tensors: number;
  /** Bytes to process (merged weights, copies, the head file). */
  bytesTotal: number;
  /** Bytes copied so far. */
  copiedBytes: () => Promise<number>;
}

/** Counts merged weights and reports progress until {@link MergeProgress.stop}. */
export class MergeProgress {
  private readonly p: MergeProgressParams;
  private readonly ticker: ReturnType<typeof setInterval>;
  private mergedBytes = 0;
  private tensorsDone = 0;
  /** The modules being merged now (shown by progress displays). */
  current: string | undefined;

  constructor(params: MergeProgressParams) {
    this.p = params;
    this.ticker = setInterval(() => void this.report().catch(() => {}), 250);
    (this.ticker as { unref?: () => void }).unref?.();
  }

  /** One more weight merged: report it. */
  async merged(byteLength: number): Promise<void> {
    this.mergedBytes += byteLength;
    this.tensorsDone++;
    await this.report();
  }

  /** Emit a progress event now. */
  async report(): Promise<void> {
    const copied = await this.p.copiedBytes();
    this.p.emit({
      type: "progress",
      tensorsDone: this.tensorsDone,
      tensors: this.p.tensors,
      bytesDone: copied + this.mergedBytes,
      bytesTotal: this.p.bytesTotal,
      ...(this.current ? { current: this.current } : {}),
    });
  }

  /** Stop the periodic events. */
  stop(): void {
    clearInterval(this.ticker);
  }
}
