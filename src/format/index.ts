export * from "./types.js";
export * from "./validate.js";
export * from "./write.js";
export * from "./is-canonical.js";
export * from "./create.js";
export * from "./summary.js";
