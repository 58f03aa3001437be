/**
 * hl.rpc() against peers that misbehave, over real sockets: a WebSocket
 * server that answers with garbage, wrong ids, the wrong kind of answer, or
 * in reverse order, and an HTTP server that answers /api/rpc with pages,
 * non-JSON or nothing at all. The client matches each answer to its own call
 * only, never crashes, and leaves nothing waiting.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type WebSocket from "ws";
import { HeartlineError } from "../../src/client/index.js";
import { waitFor } from "../helpers/server.js";
import { client, connected, ManualClientClock, scriptedWsServer } from "./helpers.js";

type Frame = { type: string; id?: number; method?: string; params?: unknown; channel?: string };

describe("Heartline client: rpc against a misbehaving WebSocket peer", () => {
  /** rpc frames held by the `reverse` method, answered two at a time in reverse order. */
  const held: Frame[] = [];
  const peer = scriptedWsServer((ws: WebSocket) => {
    const send = (v: unknown) => ws.send(typeof v === "string" ? v : JSON.stringify(v));
    ws.on("message", (d) => {
      const f = JSON.parse(d.toString()) as Frame;
      const id = f.id!;
      if (f.type === "publish") {
        // An rpc answer carrying a publish's id is not that publish's answer.
        send({ type: "rpc", id, result: "not a position" });
        send({ type: "published", id, channel: f.channel, epoch: "e1", offset: 7 });
        return;
      }
      if (f.type !== "rpc") return;
      switch (f.method) {
        case "garbage":
          for (const g of [
            "not json",
            "[1,2]",
            "null",
            { type: "rpc" },
            { type: "rpc", id: String(id), result: "string id" },
            { type: "rpc", id: id + 1000, result: "someone else's" },
            { type: "rpc", id: 1.5, result: "no such id" },
            { type: "published", id, channel: "x", epoch: "e", offset: 1 },
          ])
            send(g);
          send({ type: "rpc", id, result: { ok: true } });
          return;
        case "error-not-object":
          return send({ type: "rpc", id, error: "oops" });
        case "error-frame":
          return send({ type: "error", id, code: "rate_limited", message: "slow down" });
        case "error-null":
          // A null error is no error: the result counts.
          return send({ type: "rpc", id, error: null, result: 3 });
        case "reverse":
          held.push(f);
          if (held.length === 2) for (const h of held.splice(0).reverse()) send({ type: "rpc", id: h.id, result: h.params });
          return;
        case "twice":
          send({ type: "rpc", id, result: "first" });
          send({ type: "rpc", id, result: "second" });
          return;
        case "silent":
          return;
      }
    });
  });

  it("takes only its own answer: garbage, other ids and other kinds of answer are passed over", async () => {
    const hl = client(peer.url, { transports: ["ws"] });
    const errors: HeartlineError[] = [];
    hl.on("error", (e) => errors.push(e));
    try {
      await connected(hl, "ws");
      assert.deepEqual(await hl.rpc("garbage"), { ok: true });
      assert.equal(await hl.rpc("twice"), "first");
      assert.equal(await hl.rpc("error-null"), 3);
      const pub = await hl.publish("game:1", 1);
      assert.deepEqual(pub, { channel: "game:1", epoch: "e1", offset: 7 });
      assert.equal(hl.state, "connected");
      assert.deepEqual(errors, []);
    } finally {
      hl.close();
    }
  });

  it("an error that is not an object, and an error frame with the call's id, reject it", async () => {
    const hl = client(peer.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      await assert.rejects(hl.rpc("error-not-object"), (e: unknown) => e instanceof HeartlineError && e.code === "error");
      await assert.rejects(hl.rpc("error-frame"), (e: unknown) => e instanceof HeartlineError && e.code === "rate_limited" && e.message === "slow down");
      assert.equal(hl.state, "connected");
    } finally {
      hl.close();
    }
  });

  it("answers in reverse order reach their own calls; ids are the client's, one per call", async () => {
    const hl = client(peer.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      const sent = peer.frames.length;
      const [a, b] = await Promise.all([hl.rpc("reverse", "a"), hl.rpc("reverse", "b")]);
      assert.deepEqual([a, b], ["a", "b"]);
      const frames = peer.frames.slice(sent).map((t) => JSON.parse(t) as Frame);
      assert.deepEqual(
        frames.map((f) => [f.type, f.method, f.params]),
        [
          ["rpc", "reverse", "a"],
          ["rpc", "reverse", "b"],
        ],
      );
      assert.ok(Number.isInteger(frames[0]!.id) && frames[0]!.id !== frames[1]!.id);
    } finally {
      hl.close();
    }
  });

  it("many calls never answered all time out, and leave no timer behind", async () => {
    const clock = new ManualClientClock();
    const hl = client(peer.url, { transports: ["ws"], clock });
    try {
      await connected(hl, "ws");
      const calls = Array.from({ length: 50 }, (_, i) => hl.rpc("silent", i, { timeout: 1234 }).catch((e: HeartlineError) => e.code));
      await waitFor(() => peer.frames.filter((t) => t.includes('"silent"')).length >= 50 || undefined);
      assert.equal(clock.pending().filter((ms) => ms === 1234).length, 50);
      clock.advance(1234);
      assert.deepEqual(new Set(await Promise.all(calls)), new Set(["rpc_timeout"]));
      assert.equal(clock.pending().filter((ms) => ms === 1234).length, 0);
      assert.equal(hl.state, "connected");
    } finally {
      hl.close();
    }
  });
});

describe("Heartline client: rpc against a misbehaving HTTP peer", () => {
  let base = "";
  let aborted = 0;
  let hanging = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== "/api/rpc") {
      res.writeHead(404).end();
      return;
    }
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const method = (JSON.parse(body) as { method: string }).method;
      const answer = (status: number, type: string, text: string) => {
        res.writeHead(status, { "Content-Type": type });
        res.end(text);
      };
      if (method === "page502") return answer(502, "text/html", "<h1>Bad gateway</h1>");
      if (method === "page200") return answer(200, "text/html", "<!doctype html><p>an app's index page</p>");
      if (method === "array200") return answer(200, "application/json", "[1,2]");
      if (method === "number200") return answer(200, "application/json", "5");
      if (method === "error-odd") return answer(418, "application/json", '{"error":"teapot"}');
      if (method === "cut") return res.socket?.destroy();
      if (method === "hang") {
        hanging++;
        res.on("close", () => aborted++);
        return;
      }
      answer(200, "application/json", '{"result":null}');
    });
  });
  before(async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** A client that never connects (polling a server without /poll) but calls over HTTP. */
  const httpClient = (clock?: ManualClientClock) => client(base, { transports: ["poll"], backoffBase: 30, clock });

  it("a page or odd JSON instead of an answer rejects with the status it came with", async () => {
    const hl = httpClient();
    hl.on("error", () => {});
    try {
      assert.equal(await hl.rpc("fine"), null);
      const cases: Array<[string, string, number]> = [
        ["page502", "http_error", 502],
        ["page200", "bad_response", 200],
        ["array200", "bad_response", 200],
        ["number200", "bad_response", 200],
        ["error-odd", "http_error", 418],
        ["cut", "disconnected", undefined as unknown as number],
      ];
      for (const [method, code, status] of cases) {
        await assert.rejects(hl.rpc(method), (e: unknown) => {
          assert.ok(e instanceof HeartlineError, method);
          assert.equal(e.code, code, method);
          assert.equal(e.status, status, method);
          return true;
        });
      }
    } finally {
      hl.close();
    }
  });

  it("a request that gets no answer is aborted when it times out, and when the client closes", async () => {
    const clock = new ManualClientClock();
    const hl = httpClient(clock);
    hl.on("error", () => {});
    try {
      const timedOut = hl.rpc("hang", null, { timeout: 500 });
      await waitFor(() => hanging === 1 || undefined);
      clock.advance(500);
      await assert.rejects(timedOut, { code: "rpc_timeout" });
      await waitFor(() => aborted === 1 || undefined, 5000, "the server to see the request aborted");
      const closing = hl.rpc("hang", null, { timeout: 500 });
      await waitFor(() => hanging === 2 || undefined);
      hl.close();
      await assert.rejects(closing, { code: "closed" });
      await waitFor(() => aborted === 2 || undefined, 5000, "the server to see the second request aborted");
    } finally {
      hl.close();
    }
  });
});
