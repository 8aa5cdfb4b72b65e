/**
 * Hub push/pull on @huggingface/hub. Everything exported here runs in browsers and Node (fetch only,
 * no node:* imports); the Node cache, the token file and offline mode are in `verakit/hub/node`.
 */
export * from "./errors.js";
export * from "./events.js";
export * from "./redact.js";
export * from "./hub-url.js";
export * from "./repo-names.js";
export * from "./parse-repo-ref.js";
export * from "./hub-fetch.js";
export * from "./model-card.js";
export * from "./push-adapter.js";
export * from "./fetch-adapter.js";
export * from "./who-am-i.js";
export * from "./format-hub-event.js";
