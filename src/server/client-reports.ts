/**
 * `POST /api/diagnostics`: what clients with the `report` option say about
 * their fallbacks and cut connections (see src/client/diagnostics.ts),
 * counted for `/metrics` and the dashboard. Bounded every way: a body of at
 * most {@link MAX_BODY} bytes and {@link MAX_ENTRIES} entries of each kind,
 * values only from fixed lists (so the metrics' label sets are fixed: no
 * address, id or free text is kept; an entry's time, code and duration are
 * accepted and dropped), and one bucket of
 * {@link REPORTS_PER_SECOND} reports a second for the whole server, beyond
 * which reports are answered 429 and counted nowhere.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter, type Registry } from "prom-client";
import { z } from "zod";
import { httpError } from "../errors.js";
import { assertJsonContentType, parseJson, readBody } from "../http/body.js";
import { sendJson } from "../http/respond.js";
import { takeToken } from "../transports/rate.js";

const MAX_BODY = 4096;
const MAX_ENTRIES = 20;
const REPORTS_PER_SECOND = 50;

const TRANSPORT = z.enum(["ws", "sse", "poll"]);
/** Fields a client's entry may carry that are not kept (see src/client/diagnostics.ts). */
const IGNORED = { at: z.number().optional(), code: z.number().optional(), after: z.number().optional() };
const REPORT = z
  .object({
    fallbacks: z.array(z.object({ from: TRANSPORT, to: TRANSPORT, reason: z.enum(["timeout", "refused", "failed", "unsupported"]), ...IGNORED }).strict()).max(MAX_ENTRIES).default([]),
    cuts: z.array(z.object({ transport: TRANSPORT, cause: z.enum(["silent", "server", "network"]), ...IGNORED }).strict()).max(MAX_ENTRIES).default([]),
  })
  .strict();

export class ClientReports {
  private readonly fallbacks: Counter<"from" | "to" | "reason">;
  private readonly cuts: Counter<"transport" | "cause">;
  /** The bucket of reports, as one number (see rate.ts). */
  private tat = 0;

  constructor(
    registry: Registry,
    private readonly now: () => number,
  ) {
    this.fallbacks = new Counter({
      name: "heartline_client_fallbacks_total",
      help: "Fallbacks from one transport to the next that clients reported (option report), by transports and reason.",
      labelNames: ["from", "to", "reason"],
      registers: [registry],
    });
    this.cuts = new Counter({
      name: "heartline_client_cuts_total",
      help: "Connections that clients reported as ended (option report), by transport and cause: silent, server, network.",
      labelNames: ["transport", "cause"],
      registers: [registry],
    });
  }

  async handle(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
    assertJsonContentType(req, "POST /api/diagnostics");
    const tat = takeToken(this.tat, this.now(), REPORTS_PER_SECOND);
    if (tat < 0) throw httpError("rate_limited", "too many diagnostics reports; this one was not counted", { "Retry-After": "1" });
    this.tat = tat;
    const parsed = REPORT.safeParse(parseJson(await readBody(req, MAX_BODY)));
    if (!parsed.success) {
      throw httpError("bad_request", `POST /api/diagnostics expects {"fallbacks": [{from, to, reason}], "cuts": [{transport, cause}]}, at most ${MAX_ENTRIES} of each, with the documented values`);
    }
    for (const f of parsed.data.fallbacks) this.fallbacks.inc({ from: f.from, to: f.to, reason: f.reason });
    for (const c of parsed.data.cuts) this.cuts.inc({ transport: c.transport, cause: c.cause });
    sendJson(res, 200, { counted: parsed.data.fallbacks.length + parsed.data.cuts.length }, cors);
  }
}
