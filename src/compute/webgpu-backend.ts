/* eslint-disable @typescript-eslint/no-explicit-any */
import { VeraError } from "../errors.js";
import type { BackendInfo, ComputeBackend, MergeTask, MergeTaskResult } from "./backend.js";
import { ComputeErrorCode } from "./error-codes.js";
import { overflowError } from "./overflow.js";
import { DTYPE_BYTES } from "./round-to-dtype.js";
import { validateMergeTasks } from "./validate-tasks.js";
import { GEMM_WGSL, PACK_WGSL, TILE, UNPACK_WGSL } from "./webgpu-shaders.js";

/**
 * The part of the WebGPU `GPU` object this backend uses: `navigator.gpu` in browsers and Deno,
 * or `create([])` from the `webgpu` package in Node.
 */
export interface GpuLike {
  requestAdapter(options?: { powerPreference?: "low-power" | "high-performance" }): Promise<unknown>;
}

/** Params of {@link createWebGpuBackend}. */
export interface CreateWebGpuBackendParams {
  /**
   * The WebGPU entry object.
   * @default globalThis.navigator.gpu
   */
  gpu?: GpuLike;
  /**
   * Accept a software adapter (lavapipe, SwiftShader, WARP): correct but slow; tests use it.
   * @default true
   */
  allowSoftware?: boolean;
  /**
   * Largest float32 row block kept on the device at once, in bytes (clamped to the device's
   * storage-binding limit). Weights above it are merged block by block.
   * @default 33554432 (32 MiB)
   */
  maxBlockBytes?: number;
  /**
   * Backend name reported (the Node wrapper passes `webgpu` too).
   * @default "webgpu"
   */
  name?: string;
}

const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const SOFTWARE = /llvmpipe|lavapipe|swiftshader|warp|software|softpipe/i;

function unavailable(reason: string, cause?: unknown): VeraError {
  return new VeraError(ComputeErrorCode.COMPUTE_UNAVAILABLE, `WebGPU backend unavailable: ${reason}`, {
    expected: "a WebGPU adapter",
    received: reason,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** Whether an adapter is a software renderer (from its info). */
export function isSoftwareAdapter(adapter: unknown): boolean {
  const info = (adapter as any)?.info ?? {};
  if (info.isFallbackAdapter === true || (adapter as any)?.isFallbackAdapter === true) return true;
  return SOFTWARE.test(
    `${info.vendor ?? ""} ${info.architecture ?? ""} ${info.device ?? ""} ${info.description ?? ""}`,
  );
}

/**
 * Create the WebGPU merge backend: a tiled WGSL GEMM that merges row blocks of the weight on the
 * device. f16/bf16 weights cross the bus as 16-bit and are widened and rounded back on the device
 * (exact integer conversions, round-to-nearest-even). The shared projection A stays resident on
 * the device across layers; blocks respect the storage-binding limit. Throws
 * `COMPUTE_UNAVAILABLE` when there is no adapter.
 */
export async function createWebGpuBackend(params: CreateWebGpuBackendParams = {}): Promise<ComputeBackend> {
  const gpu: any = params.gpu ?? (globalThis as any).navigator?.gpu;
  if (!gpu) throw unavailable("no WebGPU entry point (navigator.gpu is undefined and no `gpu` was given)");
  let adapter: any;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    throw unavailable(`requestAdapter failed: ${(e as Error).message}`, e);
  }
  if (!adapter)
    throw unavailable("no adapter found (no GPU, or no driver: on Linux without a GPU install Mesa's lavapipe)");
  const software = isSoftwareAdapter(adapter);
  if (software && params.allowSoftware === false) throw unavailable("only a software adapter was found");
  const lim = adapter.limits;
  let device: any;
  try {
    device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
        maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 8),
      },
    });
  } catch (e) {
    throw unavailable(`requestDevice failed: ${(e as Error).message}`, e);
  }
  const bindLimit: number = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  const blockBytes = Math.max(1 << 16, Math.min(params.maxBlockBytes ?? 32 << 20, bindLimit) & ~3);
  let lost: string | undefined;
  device.lost?.then?.((l: any) => {
    lost = l?.message || "device lost";
  });
  const info0 = adapter.info ?? {};
  const name = params.name ?? "webgpu";
  const info: BackendInfo = {
    name,
    device:
      [info0.vendor, info0.architecture, info0.description || info0.device].filter(Boolean).join(" / ") ||
      "WebGPU adapter",
    ...(software ? { software: true } : {}),
  };

  const pipe = (code: string) =>
    device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
  const gemm = pipe(GEMM_WGSL);
  const unpack = pipe(UNPACK_WGSL);
  const pack = pipe(PACK_WGSL);

  const buffer = (size: number, usage: number) =>
    device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage });
  const upload = (data: ArrayBufferView): any => {
    const b = buffer(data.byteLength, USAGE.STORAGE | USAGE.COPY_DST);
    writePadded(b, 0, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return b;
  };
  const writePadded = (b: any, offset: number, bytes: Uint8Array) => {
    const n = bytes.byteLength;
    const main = n & ~3;
    if (main > 0) device.queue.writeBuffer(b, offset, bytes.buffer, bytes.byteOffset, main);
    if (n !== main) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(main));
      device.queue.writeBuffer(b, offset + main, tail.buffer, 0, 4);
    }
  };

  // A stays resident: one device buffer per A array (the same object for every layer with the same in_features).
  const residentA = new Map<Float32Array, any>();
  const aBuffer = (a: Float32Array): any => {
    let b = residentA.get(a);
    if (!b) {
      if (a.byteLength > bindLimit)
        throw new VeraError(
          ComputeErrorCode.COMPUTE_UNAVAILABLE,
          `the projection A (${a.byteLength} bytes) exceeds this device's storage-binding limit (${bindLimit} bytes)`,
          {
            expected: `<= ${bindLimit} bytes`,
            received: a.byteLength,
          },
        );
      b = upload(a);
      residentA.set(a, b);
    }
    return b;
  };

  const groups1d = (words: number): [number, number] => {
    const g = Math.ceil(words / 256);
    const x = Math.min(g, 65535);
    return [x, Math.ceil(g / x)];
  };

  const mergeTask = async (task: MergeTask): Promise<MergeTaskResult> => {
    const { outFeatures: o, inFeatures: n, rank: r, layout, dtype } = task;
    const eb = DTYPE_BYTES[dtype];
    const half = dtype !== "F32";
    const cols = layout === "out_in" ? n : o;
    const rowsTotal = layout === "out_in" ? o : n;
    const rowsPer = Math.max(1, Math.min(rowsTotal, Math.floor(blockBytes / (4 * cols))));
    if (4 * cols > bindLimit)
      throw new VeraError(
        ComputeErrorCode.COMPUTE_UNAVAILABLE,
        `one weight row (${4 * cols} bytes as float32) exceeds the device's storage-binding limit`,
      );
    const single = rowsPer >= rowsTotal;
    const dest = single ? task.weight : new Uint8Array(task.weight.byteLength);
    const aBuf = aBuffer(task.a);
    const bBuf = upload(task.b);
    const lbBuf = upload(task.lambdaB);
    const ldBuf = upload(task.lambdaD);
    const maxCount = rowsPer * cols;
    const wide = buffer(maxCount * 4, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC);
    const packed = half ? buffer(maxCount * 2 + 4, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC) : undefined;
    const stats = buffer(16, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC);
    const gemmU = buffer(32, USAGE.UNIFORM | USAGE.COPY_DST);
    const convU = buffer(16, USAGE.UNIFORM | USAGE.COPY_DST);
    const readback = buffer(maxCount * eb + 16 + 4, USAGE.MAP_READ | USAGE.COPY_DST);
    const owned = [bBuf, lbBuf, ldBuf, wide, packed, stats, gemmU, convU, readback].filter(Boolean);
    let maxDelta = 0;
    try {
      for (let r0 = 0; r0 < rowsTotal; r0 += rowsPer) {
        if (lost) throw new VeraError(ComputeErrorCode.COMPUTE_FAILED, `WebGPU device lost: ${lost}`);
        const rows = Math.min(rowsPer, rowsTotal - r0);
        const count = rows * cols;
        const byteStart = r0 * cols * eb;
        const bytes = task.weight.subarray(byteStart, byteStart + count * eb);
        writePadded(half ? packed : wide, 0, bytes);
        device.queue.writeBuffer(stats, 0, new Uint32Array([0, 0xffffffff, 0, 0]));
        device.queue.writeBuffer(
          gemmU,
          0,
          new Uint32Array([rows, cols, r, layout === "out_in" ? 0 : 1, r0, n, half ? 0 : 1, 0]),
        );
        device.queue.writeBuffer(convU, 0, new Uint32Array([count, dtype === "BF16" ? 1 : 0, 0, 0]));
        const enc = device.createCommandEncoder();
        const words = Math.ceil(count / 2);
        if (half) {
          const p = enc.beginComputePass();
          p.setPipeline(unpack);
          p.setBindGroup(
            0,
            device.createBindGroup({
              layout: unpack.getBindGroupLayout(0),
              entries: [
                { binding: 0, resource: { buffer: packed } },
                { binding: 1, resource: { buffer: wide } },
                { binding: 2, resource: { buffer: convU } },
              ],
            }),
          );
          p.dispatchWorkgroups(...groups1d(words));
          p.end();
        }
        {
          const p = enc.beginComputePass();
          p.setPipeline(gemm);
          p.setBindGroup(
            0,
            device.createBindGroup({
              layout: gemm.getBindGroupLayout(0),
              entries: [
                { binding: 0, resource: { buffer: wide } },
                { binding: 1, resource: { buffer: aBuf } },
                { binding: 2, resource: { buffer: bBuf } },
                { binding: 3, resource: { buffer: lbBuf } },
                { binding: 4, resource: { buffer: ldBuf } },
                { binding: 5, resource: { buffer: stats } },
                { binding: 6, resource: { buffer: gemmU } },
              ],
            }),
          );
          p.dispatchWorkgroups(Math.ceil(cols / TILE), Math.ceil(rows / TILE));
          p.end();
        }
        if (half) {
          const p = enc.beginComputePass();
          p.setPipeline(pack);
          p.setBindGroup(
            0,
            device.createBindGroup({
              layout: pack.getBindGroupLayout(0),
              entries: [
                { binding: 0, resource: { buffer: packed } },
                { binding: 1, resource: { buffer: wide } },
                { binding: 2, resource: { buffer: convU } },
                { binding: 3, resource: { buffer: stats } },
              ],
            }),
          );
          p.dispatchWorkgroups(...groups1d(words));
          p.end();
        }
        const outBytes = Math.ceil((count * eb) / 4) * 4;
        const statsAt = outBytes;
        enc.copyBufferToBuffer(half ? packed : wide, 0, readback, 0, outBytes);
        enc.copyBufferToBuffer(stats, 0, readback, statsAt, 16);
        device.queue.submit([enc.finish()]);
        try {
          await readback.mapAsync(1, 0, outBytes + 16);
        } catch (e) {
          throw new VeraError(
            ComputeErrorCode.COMPUTE_FAILED,
            `WebGPU readback failed: ${lost ?? (e as Error).message}`,
            { cause: e },
          );
        }
        const range: ArrayBuffer = readback.getMappedRange(0, outBytes + 16);
        const st = new Uint32Array(range, statsAt, 4);
        const bad = st[1]!;
        const d = new Float32Array(new Uint32Array([st[0]!]).buffer)[0]!;
        if (bad === 0xffffffff) dest.set(new Uint8Array(range, 0, count * eb), byteStart);
        readback.unmap();
        if (bad !== 0xffffffff) throw overflowError(task, r0 * cols + bad);
        if (d > maxDelta) maxDelta = d;
      }
    } finally {
      for (const b of owned) b.destroy();
    }
    if (!single) task.weight.set(dest);
    return { name: task.name, maxAbsDelta: maxDelta };
  };

  return {
    name,
    info,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const out: MergeTaskResult[] = [];
      for (const t of tasks) out.push(await mergeTask(t));
      return out;
    },
    async dispose(): Promise<void> {
      for (const b of residentA.values()) b.destroy();
      residentA.clear();
      device.destroy();
    },
  };
}
