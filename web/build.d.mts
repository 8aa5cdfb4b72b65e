import type { BuildResult, Plugin } from "esbuild";

/** esbuild plugin: only verakit's public browser entries, nothing outside `pageDir`. */
export function publicEntries(pageDir: string): Plugin;
/** Bundle a page entry the way the site is bundled. */
export function bundlePage(params: {
  entry: string;
  outdir: string;
  pageDir: string;
}): Promise<BuildResult<{ metafile: true }>>;
