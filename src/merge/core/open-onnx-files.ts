/** The pure merge's ONNX opener: the model read through a FileAccess, located by the ONNX container. */
import { VeraError } from "../../errors.js";
import { OnnxErrorCode } from "../../onnx/error-codes.js";
import { peftBaseFromOnnx } from "../../peft/base-shapes-from-onnx.js";
import { basenamePath, dirnamePath } from "../../peft/load/file-access.js";
import { fileAccessDataResolver } from "./file-access-data.js";
import { onnxContainer, parseOnnxSource, type OnnxContainerWeight } from "./onnx-container.js";
import { loadMergeAdapter, openedModel, type ContainerOpener } from "./opened-model.js";

/** Read and locate an ONNX model and load the adapter against its Linear weights. */
export const openOnnxFiles: ContainerOpener<OnnxContainerWeight> = async (params, run) => {
  const { files, model } = params;
  const t0 = performance.now();
  const stat = await files.stat(model);
  // A protobuf file is at most 2 GiB - 1 (larger models keep their weights in external data files).
  if (stat?.type === "file" && stat.size > 2147483647)
    throw new VeraError(
      OnnxErrorCode.ONNX_TOO_LARGE,
      `${model} is ${stat.size} bytes, beyond protobuf's 2 GiB limit: not an ONNX model file`,
      { path: model, expected: "<= 2147483647 bytes", received: stat.size },
    );
  const source = parseOnnxSource({ path: model, dir: dirnamePath(files, model), bytes: await files.read(model) });
  run.timings.readModel = performance.now() - t0;
  run.check();
  const name = basenamePath(model);
  const loaded = await loadMergeAdapter(params.adapter, (peftWeights) =>
    peftBaseFromOnnx({ weights: source.linear, peftWeights, label: name }),
  );
  const container = await onnxContainer({
    source,
    resolveData: fileAccessDataResolver(files),
    modules: loaded.adapter.modules,
    skipMissing: params.skipMissing ?? false,
    untie: params.untie ?? false,
    carried: loaded.carried,
    ...(params.mapping ? { mapping: params.mapping } : {}),
  });
  return openedModel({
    container,
    loaded,
    head: { name, path: model },
    reportModules: (targets) => container.reportModules(targets),
  });
};
