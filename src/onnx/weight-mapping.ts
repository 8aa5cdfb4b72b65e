/** The weight mapping lives in a leaf shared by every container (src/locate/weight-mapping.ts); re-exported here. */
export * from "../locate/weight-mapping.js";
