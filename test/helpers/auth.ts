/**
 * Test helpers for subscriber tokens: signing JWTs with jose, key files on
 * disk, and raw WebSocket upgrades (to see the HTTP refusal). Event streams,
 * refused or not, are read with `SseStream` of ./sse.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from "jose";

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

/** Writes `text` into a file of `dir` and returns its path. */
export function writeFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
