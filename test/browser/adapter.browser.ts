/**
 * The page's inspect, validate and convert views in headless Chromium, checked against the CLI (the Node
 * library) on the same inputs: the shown JSON, every issue's code and message, and the downloaded bytes.
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  browserReady,
  downloads,
  dropFiles,
  openPage,
  openSession,
  readTree,
  ROOT,
  tmp,
  vera,
  veraOk,
  type Session,
} from "./page.js";

const ready = browserReady();
const VECTORS = join(ROOT, "spec", "vectors");
const PEFT = join(ROOT, "fixtures", "peft", "adapters");
const BASES = join(ROOT, "fixtures", "peft", "bases");

/** Issues shown on the page: code and message of each error entry. */
async function shownIssues(
  page: import("playwright-core").Page,
  list: string,
): Promise<Array<{ code: string; message: string }>> {
  return page.$$eval(`#${list} li.error`, (lis) =>
    lis.map((li) => ({ code: li.getAttribute("data-code")!, message: li.getAttribute("data-message")! })),
  );
}

describe.skipIf(!ready)("the page in Chromium: inspect, validate, convert", () => {
  let s: Session;
  beforeAll(async () => {
    s = await openSession();
  });
  afterAll(async () => {
    await s?.close();
  });

  it("a dropped verakit file shows what `vera inspect --json --modules` prints", async () => {
    const { page, errors } = await openPage(s);
    for (const name of ["valid-basic.vera.safetensors", "valid-not-canonical.vera.safetensors"]) {
      const path = join(VECTORS, name);
      await dropFiles(page, "#adapter-drop", [{ name, bytes: readFileSync(path) }]);
      await page.waitForSelector(`#adapter-status:has-text("${name}:")`);
      expect(await page.getAttribute("#adapter-status", "data-state")).toBe("valid");
      const shown = JSON.parse((await page.textContent("#inspect-json"))!);
      const cli = JSON.parse(veraOk(["inspect", path, "--json", "--modules"]));
      delete cli.ok;
      cli.file = name;
      expect(shown).toEqual(cli);
      // the modules table lists every module
      expect(await page.$$eval("#modules tr", (r) => r.length)).toBe(cli.modules.length + 1);
    }
    expect(errors).toEqual([]);
  });

  it("every invalid conformance vector shows the same issues (code and message) as `vera validate`", async () => {
    const { page } = await openPage(s);
    const names = readdirSync(VECTORS).filter((n) => n.startsWith("invalid-"));
    expect(names.length).toBeGreaterThan(20);
    // one CLI run validates them all (it reports each file)
    const cli = JSON.parse(vera(["validate", ...names.map((n) => join(VECTORS, n)), "--json"]).stdout).files;
    for (const [k, name] of names.entries()) {
      await dropFiles(page, "#adapter-drop", [{ name, bytes: readFileSync(join(VECTORS, name)) }]);
      await page.waitForSelector(`#adapter-status:has-text("${name}:")`);
      expect(cli[k].ok, name).toBe(false);
      expect(await shownIssues(page, "adapter-issues"), name).toEqual(
        cli[k].issues.map((i: { code: string; message: string }) => ({ code: i.code, message: i.message })),
      );
    }
  });

  it("a PEFT folder (folder picker) imports, exports and expands to the CLI's bytes", async () => {
    const { page, errors } = await openPage(s);
    const adapter = join(PEFT, "llama-gqa-nosp");
    const base = join(BASES, "llama", "config.json");
    await page.setInputFiles("#base-file", base);
    await page.setInputFiles("#adapter-folder", adapter);
    await page.waitForSelector('#adapter-status[data-state="valid"]');
    const d = tmp();

    const imported = await downloads(page, "#btn-import");
    veraOk(["import-peft", adapter, "--base", base, "-o", join(d, "a.vera.safetensors")]);
    expect([...imported.keys()]).toEqual(["llama-gqa-nosp.vera.safetensors"]);
    expect(
      Buffer.from(imported.get("llama-gqa-nosp.vera.safetensors")!).equals(readFileSync(join(d, "a.vera.safetensors"))),
    ).toBe(true);

    for (const [button, flag] of [
      ["#btn-export-proj", "--save-projection"],
      ["#btn-export-noproj", "--no-save-projection"],
    ] as const) {
      const zip = [...(await downloads(page, button)).values()][0]!;
      const out = join(d, flag);
      veraOk(["export-peft", adapter, "--base", base, flag, "-o", out]);
      const files = unzipSync(zip);
      const want = readTree(out);
      expect(Object.keys(files).sort(), button).toEqual([...want.keys()].sort());
      for (const [name, bytes] of want) expect(Buffer.from(files[name]!).equals(bytes), `${button} ${name}`).toBe(true);
    }

    await page.fill("#lora-rank", "4");
    const lora = unzipSync([...(await downloads(page, "#btn-expand")).values()][0]!);
    veraOk(["expand-lora", adapter, "--base", base, "--rank", "4", "-o", join(d, "lora")]);
    for (const [name, bytes] of readTree(join(d, "lora")))
      expect(Buffer.from(lora[name]!).equals(bytes), name).toBe(true);
    expect(errors).toEqual([]);
  });

  it("a PEFT folder that needs a base, or its weights alone, is described with the import-peft command", async () => {
    const { page } = await openPage(s);
    const adapter = join(PEFT, "gpt2-seqcls-bias");
    await page.setInputFiles("#adapter-folder", adapter);
    await page.waitForSelector('#summary td:has-text("vera import-peft")');
    const rows = await page.$$eval("#summary tr", (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.textContent)),
    );
    expect(rows).toContainEqual([
      "import",
      "vera import-peft gpt2-seqcls-bias -o adapter.vera.safetensors --base BASE",
    ]);
    expect(rows).toContainEqual(["carried", "base_model.model.score.weight (modules_to_save, replaces score.weight)"]);
    // the weights file alone: described, and import-peft's refusal named
    const weights = readFileSync(join(adapter, "adapter_model.safetensors"));
    await dropFiles(page, "#adapter-drop", [{ name: "adapter_model.safetensors", bytes: weights }]);
    await page.waitForSelector('#summary td:has-text("import-peft refuses")');
  });

  it("refusals show the CLI's codes and messages", async () => {
    const { page } = await openPage(s);
    // no base model: in_features cannot be inferred
    const adapter = join(PEFT, "llama-gqa-nosp");
    await page.setInputFiles("#adapter-folder", adapter);
    await page.waitForSelector('#adapter-status[data-state="error"]');
    const cli = JSON.parse(vera(["import-peft", adapter, "-o", join(tmp(), "x"), "--json"]).stdout).error;
    expect(await shownIssues(page, "adapter-issues")).toEqual(
      cli.issues.map((i: { code: string; message: string }) => ({ code: i.code, message: i.message })),
    );
    expect(await page.isDisabled("#btn-export-proj")).toBe(true);

    // a pickled adapter is refused, never read
    const d = join(tmp(), "pickled");
    mkdirSync(d);
    copyFileSync(join(adapter, "adapter_config.json"), join(d, "adapter_config.json"));
    writeFileSync(join(d, "adapter_model.bin"), "not read");
    await page.setInputFiles("#adapter-folder", d);
    await page.waitForSelector('#adapter-issues li[data-code="PEFT_PICKLE_REFUSED"]');
    const pickled = JSON.parse(vera(["import-peft", d, "-o", join(tmp(), "x"), "--json"]).stdout).error;
    expect(pickled.code).toBe("PEFT_PICKLE_REFUSED");
    // the same message, with the folder named as the user chose it (the CLI names its full path)
    const msg = await page.getAttribute('#adapter-issues li[data-code="PEFT_PICKLE_REFUSED"]', "data-message");
    expect(msg).toBe(pickled.message.split(d).join("pickled"));

    // LoRA rank above the VeRA rank
    await page.setInputFiles("#base-file", join(BASES, "llama", "config.json"));
    await page.setInputFiles("#adapter-folder", adapter);
    await page.waitForSelector('#adapter-status[data-state="valid"]');
    await page.fill("#lora-rank", "99");
    await page.click("#btn-expand");
    await page.waitForSelector("#convert-issues li");
    const big = JSON.parse(
      vera([
        "expand-lora",
        adapter,
        "--base",
        join(BASES, "llama", "config.json"),
        "--rank",
        "99",
        "-o",
        join(tmp(), "l"),
        "--json",
      ]).stdout,
    ).error;
    expect(await shownIssues(page, "convert-issues")).toEqual([{ code: big.code, message: big.message }]);
  });

  it("a folder of several PEFT adapters: the one named is imported to the CLI's bytes; an unknown name is refused like the CLI", async () => {
    const { page, errors } = await openPage(s);
    const dir = join(PEFT, "multi-adapter");
    const base = join(BASES, "llama", "config.json");
    await page.fill("#adapter-name", "nope");
    await page.setInputFiles("#adapter-folder", dir);
    await page.waitForSelector('#adapter-status[data-state="error"]');
    const cli = JSON.parse(
      vera(["import-peft", dir, "--adapter", "nope", "-o", join(tmp(), "x"), "--json"]).stdout,
    ).error;
    expect(cli.code).toBe("PEFT_ADAPTER_NOT_FOUND");
    // the same message, naming the folder as the user chose it
    expect(await shownIssues(page, "adapter-issues")).toEqual([
      { code: cli.code, message: cli.message.split(dir).join("multi-adapter") },
    ]);

    await page.setInputFiles("#base-file", base);
    await page.fill("#adapter-name", "second");
    await page.press("#adapter-name", "Tab"); // the input's change event reloads the folder
    await page.waitForFunction(() =>
      document.getElementById("adapter-status")!.textContent!.includes('"second", imported'),
    );
    const got = await downloads(page, "#btn-import");
    const out = join(tmp(), "second.vera.safetensors");
    veraOk(["import-peft", dir, "--adapter", "second", "--base", base, "-o", out]);
    expect(Buffer.from([...got.values()][0]!).equals(readFileSync(out))).toBe(true);
    expect(errors).toEqual([]);
  });
});
