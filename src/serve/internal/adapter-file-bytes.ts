/** Internal: the last step of both .onnx_adapter writers (VeRA and LoRA form). */
import { writeOnnxAdapterFile, type OnnxAdapterParameter } from "../onnx-adapter-file.js";
import { checkParametersAgainstInputs, type OnnxModelInput } from "../write-onnx-adapter-inputs.js";

/**
 * Check `parameters` against the model's inputs (when given; throws the check's typed error) and write the
 * .onnx_adapter bytes with the versions that are set.
 */
export function adapterFileBytes(
  parameters: OnnxAdapterParameter[],
  params: { inputs?: OnnxModelInput[]; adapterVersion?: number; modelVersion?: number },
): Uint8Array {
  if (params.inputs) checkParametersAgainstInputs({ parameters, inputs: params.inputs });
  return writeOnnxAdapterFile({
    parameters,
    ...(params.adapterVersion !== undefined ? { adapterVersion: params.adapterVersion } : {}),
    ...(params.modelVersion !== undefined ? { modelVersion: params.modelVersion } : {}),
  });
}
