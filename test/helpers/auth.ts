/**
 * Test helpers for subscriber tokens: signing JWTs with jose, key files on
 * disk, raw WebSocket upgrades (to see the HTTP refusal), and a small SSE
 * reader that keeps the exact text of a stream and tells when it ended.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { jsonOrText, waitFor } from "./server.js";

export type Alg = "HS256" | "RS256" | "ES256";

/** Claims of a test token; `exp` in seconds. Extra fields go into the payload as they are. */
export interface Claims {
  sub?: unknown;
  exp?: unknown;
  channels?: unknown;
  publish?: unknown;
  [k: string]: unknown;
}

/** Seconds since the epoch, now. */
export const nowSec = (): number => Math.floor(Date.now() / 1000);

/** Signs `claims` as a compact JWT with `alg` (a string secret for HS256, a private key otherwise). */
export function sign(claims: Claims, key: string | Uint8Array | CryptoKey, alg: string = "HS256", header: Record<string, unknown> = {}): Promise<string> {
  const k = typeof key === "string" ? new TextEncoder().encode(key) : key;
  return new SignJWT(claims as Record<string, unknown>).setProtectedHeader({ ...header, alg }).sign(k);
}

export interface KeyFile {
  alg: Alg;
  privateKey: CryptoKey;
  /** The SPKI PEM text of the public key. */
  pem: string;
  /** Where the PEM was written. */
  path: string;
}

/** A temporary folder, removed by `cleanup()`. */
export function tempDir(prefix = "heartline-auth-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Generates a key pair for `alg` and writes its public key as PEM into `dir`. */
export async function keyFile(alg: "RS256" | "ES256", dir: string): Promise<KeyFile> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const pem = await exportSPKI(publicKey);
  const path = join(dir, `${alg.toLowerCase()}-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(path, pem);
  return { alg, privateKey, pem, path };
}

export { upgrade, type HttpAnswer } from "./server.js";

/** An event stream read with fetch, keeping its exact text. */
export class SseReader {
  text = "";
  /** Resolves when the server ends the stream (not when we abort it). */
  readonly ended: Promise<boolean>;
  private constructor(
    readonly res: Response,
    private readonly ac: AbortController,
  ) {
    this.ended = this.pump();
  }

  /** Opens a stream; a non-200 answer is returned as `{status, body}` instead. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseReader | { status: number; body: any }> {
    const ac = new AbortController();
    const res = await fetch(url, { headers: { Accept: "text/event-stream", ...headers }, signal: ac.signal });
    if (res.status !== 200) {
      return { status: res.status, body: jsonOrText(await res.text()) };
    }
    return new SseReader(res, ac);
  }

  /** Opens a stream that must answer 200. */
  static async expectOpen(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const r = await SseReader.open(url, headers);
    if (!(r instanceof SseReader)) throw new Error(`SSE ${url} answered ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  }

  private async pump(): Promise<boolean> {
    const reader = this.res.body!.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return true;
        this.text += decoder.decode(value, { stream: true });
      }
    } catch {
      return false;
    }
  }

  /** Waits until the text so far satisfies `pred`. */
  until(pred: (text: string) => boolean, what = "SSE text", timeoutMs = 5000): Promise<true> {
    return waitFor(() => pred(this.text), timeoutMs, what) as Promise<true>;
  }

  /** The `data` of every unnamed event (messages), parsed. */
  messages(): Array<{ channel: string; offset: number; data: unknown }> {
    const out = [];
    for (const block of this.text.split("\n\n")) {
      if (block.includes("\nevent:") || block.startsWith("event:")) continue;
      const line = block.split("\n").find((l) => l.startsWith("data: "));
      if (line) out.push(JSON.parse(line.slice(6)));
    }
    return out;
  }

  close(): void {
    this.ac.abort();
  }
}

/** Writes `text` into a file of `dir` and returns its path. */
export function writeFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
