/**
 * Names of what a PEFT PVeRA adapter holds beyond the VeRA adapter its inference computes (see
 * src/peft/import/pvera.ts): the log-variance half of each lambda_d and the log-variance rows of pvera_A. They act only
 * when PVeRA samples (`sample_at_inference`, which import refuses), so no merge, graft or LoRA expansion uses them; the
 * adapter carries them (extra tensors under these names) so that `exportPeft` writes PVeRA's folder back bit for bit.
 */

/** Prefix of every PVeRA-only carried tensor. */
export const PVERA_KEY_PREFIX = "pvera.";
/** The log-variance half of a module's lambda_d (length r): `pvera.lambda_d_logvar.<module>`. */
export const PVERA_LOGVAR_D_PREFIX = "pvera.lambda_d_logvar.";
/** The log-variance rows of pvera_A (rows r..2r, shape (r, max_in)). */
export const PVERA_LOGVAR_A = "pvera.A_logvar";
/** PEFT's keys of PVeRA's shared projections. */
export const KEY_PVERA_A = "base_model.pvera_A";
export const KEY_PVERA_B = "base_model.pvera_B";

/** Whether a carried tensor is one of PVeRA's sampling-only halves (not applied to any model). */
export function isPveraSamplingTensor(name: string): boolean {
  return name.startsWith(PVERA_KEY_PREFIX);
}
