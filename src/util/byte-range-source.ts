/**
 * A random-access byte source, so that a file of many GB (a GGUF model, a safetensors checkpoint) is read by
 * ranges and never whole: its size, and a read that must return exactly `length` bytes at `offset` (readers
 * never ask beyond `size`). The Node edge opens files as one (`withFileSource`), the page wraps a File.
 */
export interface ByteRangeSource {
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}
