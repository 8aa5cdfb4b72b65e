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

/** The adapter and device, with the limits this backend asks for. */
async function openDevice(
  params: CreateWebGpuBackendParams,
): Promise<{ adapter: any; device: any; software: boolean }> {
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
  try {
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
        maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 8),
      },
    });
    return { adapter, device, software };
  } catch (e) {
    throw unavailable(`requestDevice failed: ${(e as Error).message}`, e);
  }
}

/** The device with its pipelines, its limits, the resident projections and buffer helpers. */
interface Gpu {
  device: any;
  /** The largest buffer a binding may hold. */
  bindLimit: number;
  /** The float32 row block size, in bytes. */
  blockBytes: number;
  gemm: any;
  unpack: any;
  pack: any;
  /** Why the device was lost, once it was. */
  lost: { message?: string };
  /** A buffer rounded up to 4 bytes (at least 16). */
  buffer(size: number, usage: number): any;
  /** A storage buffer holding `data`. */
  upload(data: ArrayBufferView): any;
  /** Write `bytes` at `offset`, padding a trailing partial word with zeros. */
  writePadded(b: any, offset: number, bytes: Uint8Array): void;
  /** The resident device buffer of a projection A (one per A array, kept across layers). */
  aBuffer(a: Float32Array): any;
  residentA: Map<Float32Array, any>;
}

function createGpu(device: any, params: CreateWebGpuBackendParams): Gpu {
  const bindLimit: number = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  const lost: Gpu["lost"] = {};
  device.lost?.then?.((l: any) => {
    lost.message = l?.message || "device lost";
  });
  const pipe = (code: string) =>
    device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
  const g: Gpu = {
    device,
    bindLimit,
    blockBytes: Math.max(1 << 16, Math.min(params.maxBlockBytes ?? 32 << 20, bindLimit) & ~3),
    gemm: pipe(GEMM_WGSL),
    unpack: pipe(UNPACK_WGSL),
    pack: pipe(PACK_WGSL),
    lost,
    residentA: new Map(),
    buffer: (size, usage) => device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage }),
    upload(data) {
      const b = g.buffer(data.byteLength, USAGE.STORAGE | USAGE.COPY_DST);
      g.writePadded(b, 0, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return b;
    },
    writePadded(b, offset, bytes) {
      const n = bytes.byteLength;
      const main = n & ~3;
      if (main > 0) device.queue.writeBuffer(b, offset, bytes.buffer, bytes.byteOffset, main);
      if (n !== main) {
        const tail = new Uint8Array(4);
        tail.set(bytes.subarray(main));
        device.queue.writeBuffer(b, offset + main, tail.buffer, 0, 4);
      }
    },
    aBuffer(a) {
      let b = g.residentA.get(a);
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
        b = g.upload(a);
        g.residentA.set(a, b);
      }
      return b;
    },
  };
  return g;
}

const groups1d = (words: number): [number, number] => {
  const g = Math.ceil(words / 256);
  const x = Math.min(g, 65535);
  return [x, Math.ceil(g / x)];
};

/** One compute pass of `pipeline` over `buffers` (bound 0, 1, ... in order). */
function computePass(gpu: Gpu, enc: any, pipeline: any, buffers: any[], groups: [number, number]): void {
  const p = enc.beginComputePass();
  p.setPipeline(pipeline);
  p.setBindGroup(
    0,
    gpu.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  );
  p.dispatchWorkgroups(...groups);
  p.end();
}

/** The device buffers of one task, sized for its largest row block. */
interface TaskBuffers {
  a: any;
  b: any;
  lambdaB: any;
  lambdaD: any;
  wide: any;
  packed: any;
  stats: any;
  gemmU: any;
  convU: any;
  readback: any;
  /** The buffers to destroy when the task is done (A stays resident). */
  owned: any[];
}

function taskBuffers(gpu: Gpu, task: MergeTask, maxCount: number): TaskBuffers {
  const half = task.dtype !== "F32";
  const eb = DTYPE_BYTES[task.dtype];
  const a = gpu.aBuffer(task.a);
  const b = gpu.upload(task.b);
  const lambdaB = gpu.upload(task.lambdaB);
  const lambdaD = gpu.upload(task.lambdaD);
  const wide = gpu.buffer(maxCount * 4, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC);
  const packed = half ? gpu.buffer(maxCount * 2 + 4, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC) : undefined;
  const stats = gpu.buffer(16, USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC);
  const gemmU = gpu.buffer(32, USAGE.UNIFORM | USAGE.COPY_DST);
  const convU = gpu.buffer(16, USAGE.UNIFORM | USAGE.COPY_DST);
  const readback = gpu.buffer(maxCount * eb + 16 + 4, USAGE.MAP_READ | USAGE.COPY_DST);
  const owned = [b, lambdaB, lambdaD, wide, packed, stats, gemmU, convU, readback].filter(Boolean);
  return { a, b, lambdaB, lambdaD, wide, packed, stats, gemmU, convU, readback, owned };
}

/**
 * Merge rows `r0 .. r0 + rows` of the task's weight on the device: unpack (16-bit weights), GEMM, pack,
 * read back into `dest` unless an element overflowed. Returns the block's largest |delta|.
 */
async function mergeBlock(
  gpu: Gpu,
  task: MergeTask,
  bufs: TaskBuffers,
  block: { r0: number; rows: number; cols: number },
  dest: Uint8Array,
): Promise<number> {
  const { device } = gpu;
  const { r0, rows, cols } = block;
  const { dtype, layout } = task;
  const eb = DTYPE_BYTES[dtype];
  const half = dtype !== "F32";
  if (gpu.lost.message) throw new VeraError(ComputeErrorCode.COMPUTE_FAILED, `WebGPU device lost: ${gpu.lost.message}`);
  const count = rows * cols;
  const byteStart = r0 * cols * eb;
  const bytes = task.weight.subarray(byteStart, byteStart + count * eb);
  gpu.writePadded(half ? bufs.packed : bufs.wide, 0, bytes);
  device.queue.writeBuffer(bufs.stats, 0, new Uint32Array([0, 0xffffffff, 0, 0]));
  device.queue.writeBuffer(
    bufs.gemmU,
    0,
    new Uint32Array([rows, cols, task.rank, layout === "out_in" ? 0 : 1, r0, task.inFeatures, half ? 0 : 1, 0]),
  );
  device.queue.writeBuffer(bufs.convU, 0, new Uint32Array([count, dtype === "BF16" ? 1 : 0, 0, 0]));
  const enc = device.createCommandEncoder();
  const words = Math.ceil(count / 2);
  if (half) computePass(gpu, enc, gpu.unpack, [bufs.packed, bufs.wide, bufs.convU], groups1d(words));
  computePass(
    gpu,
    enc,
    gpu.gemm,
    [bufs.wide, bufs.a, bufs.b, bufs.lambdaB, bufs.lambdaD, bufs.stats, bufs.gemmU],
    [Math.ceil(cols / TILE), Math.ceil(rows / TILE)],
  );
  if (half) computePass(gpu, enc, gpu.pack, [bufs.packed, bufs.wide, bufs.convU, bufs.stats], groups1d(words));
  const outBytes = Math.ceil((count * eb) / 4) * 4;
  const statsAt = outBytes;
  enc.copyBufferToBuffer(half ? bufs.packed : bufs.wide, 0, bufs.readback, 0, outBytes);
  enc.copyBufferToBuffer(bufs.stats, 0, bufs.readback, statsAt, 16);
  device.queue.submit([enc.finish()]);
  try {
    await bufs.readback.mapAsync(1, 0, outBytes + 16);
  } catch (e) {
    throw new VeraError(
      ComputeErrorCode.COMPUTE_FAILED,
      `WebGPU readback failed: ${gpu.lost.message ?? (e as Error).message}`,
      { cause: e },
    );
  }
  const range: ArrayBuffer = bufs.readback.getMappedRange(0, outBytes + 16);
  const st = new Uint32Array(range, statsAt, 4);
  const bad = st[1]!;
  const d = new Float32Array(new Uint32Array([st[0]!]).buffer)[0]!;
  if (bad === 0xffffffff) dest.set(new Uint8Array(range, 0, count * eb), byteStart);
  bufs.readback.unmap();
  if (bad !== 0xffffffff) throw overflowError(task, r0 * cols + bad);
  return d;
}

/** Merge one task block by block (in place when one block holds the whole weight, else through a copy). */
async function mergeTask(gpu: Gpu, task: MergeTask): Promise<MergeTaskResult> {
  const { outFeatures: o, inFeatures: n, layout } = task;
  const cols = layout === "out_in" ? n : o;
  const rowsTotal = layout === "out_in" ? o : n;
  const rowsPer = Math.max(1, Math.min(rowsTotal, Math.floor(gpu.blockBytes / (4 * cols))));
  if (4 * cols > gpu.bindLimit)
    throw new VeraError(
      ComputeErrorCode.COMPUTE_UNAVAILABLE,
      `one weight row (${4 * cols} bytes as float32) exceeds the device's storage-binding limit`,
    );
  const single = rowsPer >= rowsTotal;
  const dest = single ? task.weight : new Uint8Array(task.weight.byteLength);
  const bufs = taskBuffers(gpu, task, rowsPer * cols);
  let maxDelta = 0;
  try {
    for (let r0 = 0; r0 < rowsTotal; r0 += rowsPer) {
      const d = await mergeBlock(gpu, task, bufs, { r0, rows: Math.min(rowsPer, rowsTotal - r0), cols }, dest);
      if (d > maxDelta) maxDelta = d;
    }
  } finally {
    for (const b of bufs.owned) b.destroy();
  }
  if (!single) task.weight.set(dest);
  return { name: task.name, maxAbsDelta: maxDelta };
}

/**
 * Create the WebGPU merge backend: a tiled WGSL GEMM that merges row blocks of the weight on the
 * device. f16/bf16 weights cross the bus as 16-bit and are widened and rounded back on the device
 * (exact integer conversions, round-to-nearest-even). The shared projection A stays resident on
 * the device across layers; blocks respect the storage-binding limit. Throws
 * `COMPUTE_UNAVAILABLE` when there is no adapter.
 */
export async function createWebGpuBackend(params: CreateWebGpuBackendParams = {}): Promise<ComputeBackend> {
  const { adapter, device, software } = await openDevice(params);
  const gpu = createGpu(device, params);
  const info0 = adapter.info ?? {};
  const name = params.name ?? "webgpu";
  const info: BackendInfo = {
    name,
    device:
      [info0.vendor, info0.architecture, info0.description || info0.device].filter(Boolean).join(" / ") ||
      "WebGPU adapter",
    ...(software ? { software: true } : {}),
  };
  return {
    name,
    info,
    async merge(tasks: MergeTask[]): Promise<MergeTaskResult[]> {
      validateMergeTasks(tasks);
      const out: MergeTaskResult[] = [];
      for (const t of tasks) out.push(await mergeTask(gpu, t));
      return out;
    },
    async dispose(): Promise<void> {
      for (const b of gpu.residentA.values()) b.destroy();
      gpu.residentA.clear();
      device.destroy();
    },
  };
}
