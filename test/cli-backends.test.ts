/** Probing the compute backends is silent: Dawn's driver errors never reach the CLI's output. */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDirs } from "./temp-helpers.js";

const cli = join(__dirname, "../dist/cli/index.js");
const fx = join(__dirname, "../fixtures/onnx");
const tmp = useTempDirs("vera-cli-backends-");
/** The Vulkan loader finds no driver: what a machine without a GPU driver looks like to Dawn. */
const NO_DRIVER = {
  ...process.env,
  VK_ICD_FILENAMES: "/nonexistent/icd.json",
  VK_DRIVER_FILES: "/nonexistent/icd.json",
};
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: NO_DRIVER });
/** What Dawn and the Vulkan loader print natively when they find no driver. */
const NATIVE = /BackendVk|vkCreateInstance|VulkanError|loader_get_json|Warning:|\.cpp:/;

describe("backend probing without a Vulkan driver", () => {
  it("vera backends lists every backend and prints nothing native", () => {
    const r = run(["backends", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(NATIVE);
    expect(r.stderr).toBe("");
    const names = (JSON.parse(r.stdout).backends as Array<{ name: string }>).map((b) => b.name);
    expect(names).toEqual(["ort-cuda", "webgpu", "ort-webgpu", "ort-cpu", "wasm", "reference"]);
  });
  it("merge --backend auto says which backend ran and why the others were skipped, silently", () => {
    const d = tmp();
    const args = [join(fx, "llama-dynamo/model.onnx"), join(fx, "adapters/llama"), "-o", join(d, "m.onnx")];
    const r = run(["merge", ...args, "--backend", "auto", "--no-fsync"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(NATIVE);
    expect(r.stdout).toMatch(/backend (ort-cpu|wasm|reference|ort-cuda|webgpu) /);
    // ort-cuda is first in auto's order: when it did not run, the report names it among the skipped
    if (!/backend ort-cuda /.test(r.stdout)) expect(r.stdout).toMatch(/^skipped ort-cuda \(.+; `vera backends`/m);
  });
});
