/** The pure merge's GGUF opener: the header read through a FileAccess by ranges, located by the GGUF container. */
import { VeraError } from "../../errors.js";
import { GgufErrorCode } from "../../gguf/error-codes.js";
import { ggufScalar, readGguf } from "../../gguf/read-gguf.js";
import { parseGgufNameMapping } from "../../gguf/tensor-names.js";
import { basenamePath } from "../../peft/load/file-access.js";
import { ggufAdapterBase } from "./gguf-adapter-base.js";
import { ggufContainer, type GgufWeight } from "./gguf-container.js";
import { loadMergeAdapter, openedModel, type ContainerOpener } from "./opened-model.js";

/**
 * Read a GGUF file's header (only the header: the tensor data is read weight by weight later), size the adapter by
 * its tensors and locate the weights. A part of a split GGUF is refused (`GGUF_SPLIT`): its other parts are
 * found by name on disk, by `vera merge`.
 */
export const openGgufFiles: ContainerOpener<GgufWeight> = async (params, run) => {
  const { files, model } = params;
  const t0 = performance.now();
  const kind = await files.stat(model);
  const size = kind?.type === "file" ? kind.size : 0;
  const file = await readGguf({
    source: { size, read: (offset, length) => files.read(model, { offset, length }) },
    label: model,
  });
  const count = ggufScalar(file, "split.count");
  if ((typeof count === "bigint" ? Number(count) : typeof count === "number" ? count : 1) > 1)
    throw new VeraError(
      GgufErrorCode.GGUF_SPLIT,
      `${model} is one part of a split GGUF (split.count ${String(count)}): merge its parts with \`vera merge\``,
      { path: model, expected: "one GGUF file", received: `split.count ${String(count)}` },
    );
  run.timings.readModel = performance.now() - t0;
  run.check();
  // the mapping format every container shares, read as llama.cpp tensor names
  const mapping = params.mapping ? parseGgufNameMapping(JSON.stringify({ modules: params.mapping })) : undefined;
  const loaded = await loadMergeAdapter(
    params.adapter,
    ggufAdapterBase({ file, label: model, ...(mapping ? { mapping } : {}) }),
  );
  const container = ggufContainer({
    file,
    path: model,
    outputName: basenamePath(model),
    modules: loaded.adapter.modules,
    carried: loaded.carried,
    ...(mapping ? { mapping } : {}),
  });
  return openedModel({ container, loaded, reportModules: () => container.reportModules() });
};
