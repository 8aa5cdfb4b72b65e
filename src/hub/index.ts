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
export * from "./push/model-card.js";
export * from "./push/push-adapter.js";
export * from "./pull/fetch-adapter.js";
export * from "./whoami/who-am-i.js";
