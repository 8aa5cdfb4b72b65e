import type { Server } from "node:http";

/** Serve `dir` (default web/dist) on 127.0.0.1; `port` 0 picks a free one. */
export function startServer(params?: { dir?: string; port?: number }): Promise<{ server: Server; url: string }>;
