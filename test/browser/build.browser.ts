/** The page build admits only verakit's public browser entries (no Chromium needed). */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bundlePage } from "../../web/build.mjs";
import { ROOT, tmp } from "./page.js";

async function bundle(source: string): Promise<string[]> {
  const d = tmp();
  const src = join(d, "src");
  mkdirSync(src);
  writeFileSync(join(src, "main.ts"), source);
  try {
    await bundlePage({ entry: join(src, "main.ts"), outdir: join(d, "out"), pageDir: src });
    return [];
  } catch (e) {
    return ((e as { errors?: Array<{ text: string }> }).errors ?? []).map((x) => x.text);
  }
}

describe("the page build", () => {
  it("bundles the public browser entries", async () => {
    expect(await bundle('import { validateVera } from "verakit/format";\nconsole.log(validateVera);\n')).toEqual([]);
    // the merge core is a browser entry (its Node edge is verakit/merge/node)
    expect(await bundle('import { mergeModelFiles } from "verakit/merge";\nconsole.log(mergeModelFiles);\n')).toEqual(
      [],
    );
  });

  it("refuses the Node-only entries and private modules", async () => {
    for (const entry of [
      "verakit/node",
      "verakit/merge/node",
      "verakit/serve/node",
      "verakit/hub/node",
      "verakit/internal",
    ]) {
      const errors = await bundle(`import * as m from "${entry}";\nconsole.log(m);\n`);
      expect(errors.join("\n"), entry).toContain(`${entry} is not a public browser entry`);
    }
    const priv = join(ROOT, "src", "format", "validate.ts");
    const errors = await bundle(
      `import { validateVera } from "${priv.replace(/\\/g, "/")}";\nconsole.log(validateVera);\n`,
    );
    expect(errors.join("\n")).toContain("the page may import only verakit's public entries");
  });
});
