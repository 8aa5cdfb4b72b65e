export * from "./dtypes.js";
export * from "./parse.js";
export * from "./write.js";
