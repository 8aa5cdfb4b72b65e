import { describe, expect, it } from "vitest";
import { hfBlob, hfBlobsOfSnapshot, hfRef, hfRepoFolder, hfSnapshot } from "../src/util/hf-cache-layout.js";

// The layout huggingface_hub 1.x writes (file_download.repo_folder_name: "models--" + repo id with "/" as "--").
describe("the Hugging Face cache layout (one module for every caller)", () => {
  it("names the repo folder, blobs, snapshots and refs as huggingface_hub does", () => {
    expect(hfRepoFolder("alice/llama-vera")).toBe("models--alice--llama-vera");
    expect(hfBlob("alice/m", "ab12")).toEqual(["models--alice--m", "blobs", "ab12"]);
    expect(hfSnapshot("alice/m", "c".repeat(40))).toEqual(["models--alice--m", "snapshots", "c".repeat(40)]);
    expect(hfRef("alice/m", "refs/pr/1")).toEqual(["models--alice--m", "refs", "refs", "pr", "1"]);
  });

  it("finds a snapshot folder's blobs folder, and nothing for another folder", () => {
    const snap = ["", "home", "u", ".cache", "huggingface", "hub", "models--a--b", "snapshots", "c".repeat(40)];
    expect(hfBlobsOfSnapshot(snap)).toEqual(["", "home", "u", ".cache", "huggingface", "hub", "models--a--b", "blobs"]);
    expect(hfBlobsOfSnapshot(["", "tmp", "model"])).toBeUndefined();
    expect(hfBlobsOfSnapshot(["", "tmp", "snapshots", "x"])).toBeUndefined();
    expect(hfBlobsOfSnapshot(["", "tmp", "datasets--a--b", "snapshots", "x"])).toBeUndefined();
  });
});
