import type { HubProgressEvent } from "../events.js";
import { drain, operationStream } from "../../util/event-stream.js";
import { fetchAdapterCore } from "./fetch-core.js";
import type { FetchAdapterParams, FetchedAdapter } from "./fetched-adapter.js";

export type { FetchAdapterParams, FetchedAdapter, FetchedFile } from "./fetched-adapter.js";

/**
 * Download an adapter from the Hub into memory (browsers and Node; no cache). Resolves the revision
 * to a commit, takes `filename` when the repo has it, else a PEFT VeRA adapter (adapter_config.json +
 * adapter_model.safetensors, imported). Every file is checked against its size and digest, and the
 * adapter is validated, before this returns. Yields progress events; returns the adapter.
 */
export function fetchAdapterIter(params: FetchAdapterParams): AsyncGenerator<HubProgressEvent, FetchedAdapter> {
  return operationStream(params, fetchAdapterCore);
}

/** Promise form of {@link fetchAdapterIter}; progress goes to `params.onProgress`. */
export function fetchAdapter(params: FetchAdapterParams): Promise<FetchedAdapter> {
  return drain(fetchAdapterIter(params), params.onProgress);
}
