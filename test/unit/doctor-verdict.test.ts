/** The judgement of `heartline doctor` on given measurements: who answered, verdicts, the heartbeat advice. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Answer } from "../../src/cli/doctor-probes.js";
import { judgeIdle, judgePoll, judgeSse, judgeWebSocket, keepAliveFor, pathNames, whoAnswered } from "../../src/cli/doctor-verdict.js";

const answer = (status: number, headers: Record<string, string>, body = ""): Answer => ({ status, headers, body });

describe("whoAnswered", () => {
  it("names Heartline from its JSON error, with the proxy it came through", () => {
    const a = answer(400, { server: "nginx/1.24.0" }, '{"error":{"code":"bad_request","message":"/ws expects a WebSocket upgrade"}}');
    assert.deepEqual(whoAnswered(a), { by: "Heartline (through nginx)", heartline: { code: "bad_request", message: "/ws expects a WebSocket upgrade" } });
  });

  for (const [what, a, by] of [
    ["nginx's page", answer(502, {}, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"), "nginx"],
    ["HAProxy's deny page", answer(403, {}, "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n"), "HAProxy"],
    ["HAProxy's 504 page", answer(504, {}, "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n"), "HAProxy"],
    ["an AWS load balancer", answer(502, { server: "awselb/2.0" }, "<html><body><center><h1>502 Bad Gateway</h1></center></body></html>"), "AWS load balancer"],
    ["Cloudflare", answer(524, { server: "cloudflare", "cf-ray": "8a1b2c3d4e5f-AMS" }, "A timeout occurred"), "Cloudflare"],
    ["a Google Cloud load balancer", answer(502, { via: "1.1 google" }, "<html>Error: Server Error</html>"), "Google Cloud load balancer"],
    ["an unnamed hop", answer(403, {}, "denied"), "an unknown hop (no Server or Via header, no known error page)"],
  ] as const) {
    it(`names ${what}`, () => assert.equal(whoAnswered(a).by, by));
  }

  it("lists the Via header of a hop it does not know", () => {
    assert.deepEqual(pathNames({ via: "1.1 varnish (Varnish/7.1)" }), ["Via: 1.1 varnish (Varnish/7.1)"]);
    assert.deepEqual(pathNames({}), []);
  });
});

describe("the checks' verdicts", () => {
  it("websocket: a dropped Upgrade header is named, with nginx's fix first", () => {
    const c = judgeWebSocket({ open: false, answer: answer(400, { server: "nginx" }, '{"error":{"code":"bad_request","message":"/ws expects a WebSocket upgrade"}}') });
    assert.equal(c.status, "fail");
    assert.equal(c.by, "nginx");
    assert.equal(c.fixes[0]!.for, "nginx");
    assert.equal(judgeWebSocket({ open: true, headers: {} }).status, "pass");
  });

  it("sse: events arriving together are buffered; spread out, they pass", () => {
    const buffered = judgeSse({ events: [2600, 2600, 2601, 2601, 2601], ended: true, headersAt: 10, openAt: 2600, headers: {} }, 5, 500);
    assert.equal(buffered.status, "fail");
    assert.match(buffered.summary, /^buffered: 5 events written 500 ms apart arrived within 1 ms/);
    const fine = judgeSse({ events: [500, 1000, 1500, 2000, 2500], ended: true, headersAt: 10, openAt: 10, headers: {} }, 5, 500);
    assert.equal(fine.status, "pass");
    const cut = judgeSse({ events: [500, 1000], ended: false, headersAt: 10, openAt: 10, headers: {} }, 5, 500);
    assert.match(cut.summary, /cut after 2 of 5 events/);
  });

  it("long-poll: a 504 before the hold fails, naming who answered; a full hold passes", () => {
    const c = judgePoll({ elapsed: 5000, answer: answer(504, {}, "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>") }, 10, 2);
    assert.equal(c.status, "fail");
    assert.match(c.summary, /HTTP 504 after 5\.0 s by HAProxy/);
    assert.match(c.fixes[0]!.fix, /--poll-timeout 2/);
    assert.equal(judgePoll({ elapsed: 10_020, messages: 0 }, 10).status, "pass");
  });
});

describe("the heartbeat that keeps a path alive", () => {
  it("is half the cut in whole seconds, at least 1", () => {
    assert.equal(keepAliveFor(60_000), 30);
    assert.equal(keepAliveFor(100_000), 50);
    assert.equal(keepAliveFor(5_000), 2);
    assert.equal(keepAliveFor(1_500), 1);
  });

  it("a cut the server's heartbeat and poll timeout already beat is a warning; a shorter one fails", () => {
    const cutAt = (ms: number) => ({ openAt: 50, cutAt: 50 + ms, headers: { server: "awselb/2.0" } });
    const alb = judgeIdle(cutAt(60_000), cutAt(60_000), 120, { heartbeatInterval: 25, pollTimeout: 25 });
    assert.equal(alb.check.status, "warn");
    assert.equal(alb.keepAlive, 30);
    assert.deepEqual(alb.check.fixes, []);
    const gcp = judgeIdle(cutAt(30_000), cutAt(30_000), 120, { heartbeatInterval: 25, pollTimeout: 25 });
    assert.equal(gcp.check.status, "fail");
    assert.equal(gcp.keepAlive, 15);
    assert.match(gcp.check.note!, /A heartbeat every 15 s or less keeps this path alive; Heartline sends one after 25 s/);
    const none = judgeIdle({ openAt: 50, endAt: 120_050 }, { openAt: 50, endAt: 120_050 }, 120, { heartbeatInterval: 25, pollTimeout: 25 });
    assert.equal(none.check.status, "pass");
    assert.equal(none.keepAlive, undefined);
  });
});
