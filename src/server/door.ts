/**
 * The services of one Heartline instance that the front door's handlers use
 * (types only): routes.ts and subscribe.ts take a `Door`, and `FrontDoor`
 * (front-door.ts) is one, so the table and its dispatcher need not import
 * each other.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Registry } from "prom-client";
import type { Publisher } from "../http/publish.js";
import type { ServerContext } from "../transports/connection.js";
import type { PollTransport } from "../transports/poll.js";
import type { WebSocketTransport } from "../transports/websocket.js";
import type { Admission } from "./admission.js";
import type { ClientReports } from "./client-reports.js";
import type { Diagnostics } from "./diag.js";
import type { ServerApi } from "./server-api.js";

export interface Door {
  readonly ctx: ServerContext;
  readonly admission: Admission;
  readonly publisher: Publisher;
  readonly metrics: Registry;
  readonly poll: PollTransport;
  readonly ws: WebSocketTransport;
  /** The server API of SPEC §10 beyond publish and broadcast. */
  readonly api: ServerApi;
  /** Clients' reports of fallbacks and cut connections (`POST /api/diagnostics`). */
  readonly reports: ClientReports;
  /** `GET /diag`: the holds `heartline doctor` measures the path with. */
  readonly diag: Diagnostics;
  /** `POST /api/publish` requests not answered yet: their bodies being read, their messages being stored (drain waits for them). */
  readonly publishRequests: Set<IncomingMessage>;
  /** Answers an error through the response or, for a request taken out of node:http, on its socket. */
  fail(out: ServerResponse | Socket, err: unknown, headers?: Record<string, string>): void;
}
