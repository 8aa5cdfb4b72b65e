/**
 * Node-only part of the Hub client (`verakit/hub/node`): the Hub cache shared with Python's
 * huggingface_hub, the token file, HF_* environment variables and offline mode. Re-exports the
 * browser-safe `verakit/hub` API too, so Node code needs one import.
 */
export * from "../index.js";
export * from "./resolve-hub-token.js";
export * from "./resolve-hub-cache-dir.js";
export * from "./is-hub-offline.js";
export * from "./pull-adapter.js";
export * from "./resolve-hub-settings.js";
export * from "./find-cached-snapshot.js";
