import { build, type BuildOptions, type BuildResult } from "esbuild";

/**
 * Bundle `entry` for browsers in memory (ESM, silent, with a metafile), with `extra` esbuild options on top.
 * The browser-safety tests then check the bundle's inputs and output text.
 */
export async function bundleForBrowser(
  entry: string,
  extra: BuildOptions = {},
): Promise<BuildResult<{ metafile: true; write: false }>> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
    metafile: true,
    ...extra,
  });
  return r as BuildResult<{ metafile: true; write: false }>;
}
