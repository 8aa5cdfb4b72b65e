import { probeNodeBackends } from "../../compute/node/probe-node-backends.js";
import type { Command } from "../command.js";

const command: Command = {
  name: "backends",
  summary: "List the merge compute backends and whether each can run here",
  description: "List the merge compute backends, whether each can run here, and on what (the names `--backend` takes).",
  usage: "vera backends [--json]",
  options: {},
  allowPositionals: false,
  async run(_args, ctx) {
    const probes = await probeNodeBackends();
    if (ctx.json) {
      ctx.out(JSON.stringify({ ok: true, backends: probes }, null, 2));
      return 0;
    }
    for (const p of probes) {
      if (p.available)
        ctx.out(
          `${p.name.padEnd(11)} available   ${p.device ?? ""}${p.software ? " (software renderer: correct, slow; auto skips it)" : ""}`,
        );
      else ctx.out(`${p.name.padEnd(11)} unavailable ${p.reason ?? ""}`);
    }
    ctx.out("auto picks the first available of: ort-cuda, webgpu (hardware adapter), ort-cpu, wasm, reference");
    return 0;
  },
};
export default command;
