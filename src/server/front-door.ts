/**
 * The front door: every request and upgrade Heartline serves comes in here.
 * It checks the request target and the Origin, answers CORS preflights,
 * finds the route in the table (routes.ts) and calls its handler; errors
 * become SPEC answers, through the response or on the socket.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Registry } from "prom-client";
import { httpError } from "../errors.js";
import type { OriginPolicy } from "../http/origin.js";
import type { Publisher } from "../http/publish.js";
import { closeAfterAnswer, isH2, isResponse } from "../http/h2.js";
import { assertRoutePath, routePath } from "../http/request-path.js";
import { sendError, sendRawError, toHeartlineError } from "../http/respond.js";
import type { ServerContext } from "../transports/connection.js";
import type { PollTransport } from "../transports/poll.js";
import type { WebSocketTransport } from "../transports/websocket.js";
import { ClientReports } from "./client-reports.js";
import { Admission } from "./admission.js";
import { Diagnostics } from "./diag.js";
import type { Door } from "./door.js";
import type { ServerApi } from "./server-api.js";
import { assertMethod, findRoute, noRoute, type Route } from "./routes.js";

const PREFLIGHT = {
  "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
  "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
  "Access-Control-Max-Age": "600",
};

export class FrontDoor implements Door {
  readonly admission: Admission;
  readonly reports: ClientReports;
  readonly publishRequests = new Set<IncomingMessage>();
  readonly diag: Diagnostics;

  constructor(
    readonly ctx: ServerContext,
    origins: OriginPolicy,
    readonly publisher: Publisher,
    readonly metrics: Registry,
    readonly poll: PollTransport,
    readonly ws: WebSocketTransport,
    readonly api: ServerApi,
  ) {
    this.admission = new Admission(ctx, origins, publisher);
    this.reports = new ClientReports(metrics, () => ctx.clock.now());
    this.diag = new Diagnostics(ctx);
  }

  /** The route of a request's target, or undefined (also for a target that is not a plain path). */
  routeOf(url: string | undefined, pages: boolean): Route | undefined {
    const path = routePath(url);
    return path === undefined ? undefined : findRoute(path, pages);
  }

  /** Serves a request through node:http's response. */
  request(req: IncomingMessage, res: ServerResponse, pages: boolean): void {
    const cors = this.admission.corsHeaders(req);
    this.route(req, res, cors, pages).catch((err) => this.fail(res, err, cors));
  }

  /** Serves an upgrade: `/ws` becomes a WebSocket, anything else is refused as HTTP on the socket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", noop);
    this.upgradeRoute(req, socket, head).catch((err) => {
      const e = toHeartlineError(err, (error) => this.ctx.logs.write("upgrade_error", "error", { err: error }, "unexpected error during a WebSocket upgrade"));
      sendRawError(socket, e);
    });
  }

  /** An error while serving a request, answered through its response or, for one taken out of node:http, on its socket. */
  fail(out: ServerResponse | Socket, err: unknown, headers?: Record<string, string>): void {
    const e = toHeartlineError(err, (error) => this.ctx.logs.write("request_error", "error", { err: error }, "unexpected error while serving a request"));
    if (e.code === "broker_unavailable") this.ctx.stats.brokerErrors++;
    if (isResponse(out)) {
      // Refused before its body was read (e.g. a publish without a credential): the connection
      // closes after the answer rather than wait for the rest, but half-closed (see halfClose).
      // On HTTP/2 only the request's stream ends, with no connection header.
      if (out.req.complete) sendError(out, e, headers);
      else if (isH2(out)) {
        closeAfterAnswer(out);
        sendError(out, e, headers);
      } else {
        out.req.socket.destroySoon = halfClose;
        sendError(out, e, { ...headers, Connection: "close" });
      }
    } else sendRawError(out, e, headers);
  }

  private async route(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, pages: boolean): Promise<void> {
    // Routes are chosen by the path exactly as received (see request-path.ts).
    const path = assertRoutePath(req.url);
    const method = req.method ?? "GET";
    if (method === "OPTIONS") {
      if (!this.admission.allows(req)) throw httpError("origin_not_allowed", "this Origin is not in --allowed-origins");
      res.writeHead(204, { ...cors, ...PREFLIGHT });
      res.end();
      return;
    }
    this.admission.assertOrigin(req);
    const route = findRoute(path, pages);
    if (route === undefined) throw noRoute(method, path);
    assertMethod(route, method);
    return route.serve(this, req, res, cors, path);
  }

  private async upgradeRoute(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const route = findRoute(assertRoutePath(req.url), false);
    if (route?.upgrade === undefined) throw httpError("not_found", "WebSocket connections are served on /ws");
    return route.upgrade(this, req, socket, head);
  }
}

function noop(): void {}

/**
 * What a `Connection: close` answer ends with, for a request whose body has
 * not all arrived. node:http would destroy the socket once the answer is
 * written, and a client still sending its body would then get a reset, which
 * can discard the answer before the client reads it. Instead only our side
 * is closed: the answer and a FIN go out, whatever the client still sends is
 * read and dropped (node:http dumps an unread body), and the socket closes
 * when the client ends its side, or at the request timeout.
 */
function halfClose(this: Socket): void {
  this.end();
}
