/**
 * Internal: the onnxruntime sessions of one backend. A merge session is kept per (A, dtype,
 * layout), least recently used ones released beyond a limit, so onnxruntime pre-packs each shared
 * A once for every layer that uses it.
 */
import type * as OrtNs from "onnxruntime-node";
import { VeraError } from "../../errors.js";
import type { MergeTask } from "../backend.js";
import { ComputeErrorCode } from "../error-codes.js";
import type { Ort } from "./ort-load.js";
import { mergeModel, type GraphKind } from "./ort-merge-graphs.js";

/** An onnxruntime inference session. */
export type Session = OrtNs.InferenceSession;

/** Parameters of {@link OrtSessions}' constructor. */
export interface OrtSessionsParams {
  ort: Ort;
  /** The execution provider, for messages. */
  ep: string;
  /** The backend's name, for messages. */
  name: string;
  options: OrtNs.InferenceSession.SessionOptions;
  /** Most merge sessions kept open. */
  maxSessions: number;
}

const ids = new WeakMap<Float32Array, number>();
let nextId = 1;
function idOf(a: Float32Array): number {
  let id = ids.get(a);
  if (id === undefined) {
    id = nextId++;
    ids.set(a, id);
  }
  return id;
}

/** Opens, caches, runs and releases sessions. */
export class OrtSessions {
  private readonly p: OrtSessionsParams;
  private readonly graphs = new Map<string, Session>();

  constructor(params: OrtSessionsParams) {
    this.p = params;
  }

  /**
   * A session for a model.
   * @throws VeraError `COMPUTE_UNAVAILABLE` when the execution provider cannot run it.
   */
  async open(model: Uint8Array): Promise<Session> {
    try {
      return await this.p.ort.InferenceSession.create(model, this.p.options);
    } catch (e) {
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNAVAILABLE,
        `onnxruntime execution provider "${this.p.ep}" cannot run here: ${(e as Error).message}`,
        { expected: `a working ${this.p.ep} execution provider`, received: (e as Error).message, cause: e },
      );
    }
  }

  /** The merge session for a task's (A, dtype, layout), opened on first use. */
  async mergeSession(task: MergeTask, kind: GraphKind): Promise<Session> {
    const key =
      task.layout === "out_in"
        ? `oi:${idOf(task.a)}:${task.rank}:${task.inFeatures}:${kind}`
        : `io:${task.rank}:${kind}`;
    let s = this.graphs.get(key);
    if (s) {
      this.graphs.delete(key); // most recently used last
      this.graphs.set(key, s);
      return s;
    }
    // Keep a few sessions: one per distinct A (in_features) and dtype is what a model needs; a
    // caller that passes a fresh A array per layer still works, it only loses the pre-packing.
    while (this.graphs.size >= this.p.maxSessions) {
      const [oldKey, old] = this.graphs.entries().next().value as [string, Session];
      this.graphs.delete(oldKey);
      await old.release();
    }
    s = await this.open(mergeModel(task, kind));
    this.graphs.set(key, s);
    return s;
  }

  /**
   * Run a session (into pre-bound `fetches` when given).
   * @throws VeraError `COMPUTE_FAILED`.
   */
  async run(
    s: Session,
    feeds: Record<string, OrtNs.Tensor>,
    fetches?: Record<string, OrtNs.Tensor>,
  ): Promise<OrtNs.InferenceSession.ReturnType> {
    try {
      return fetches ? await s.run(feeds, fetches as never) : await s.run(feeds);
    } catch (e) {
      throw new VeraError(ComputeErrorCode.COMPUTE_FAILED, `${this.p.name} failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  /** Release every merge session. */
  async dispose(): Promise<void> {
    for (const s of this.graphs.values()) await s.release();
    this.graphs.clear();
  }
}
