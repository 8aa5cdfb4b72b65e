/** The weight mapping lives in a leaf shared by every container (src/weight-mapping.ts); re-exported here. */
export * from "../weight-mapping.js";
