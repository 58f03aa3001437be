/**
 * The Socket.IO 4 peer of the benchmark: a plain Socket.IO server doing what
 * Heartline does in the scenarios, in its own process.
 *
 * - WebSocket transport only (no HTTP long-polling handshake, no upgrade),
 *   per-message compression off (Socket.IO's default, like Heartline's).
 * - A client names its room in the handshake query (`?room=…`); the server
 *   joins it to that room and then emits `ready`, so the client knows that
 *   anything broadcast from now on reaches it.
 * - `POST /publish?room=…` with a JSON body broadcasts it to the room as the
 *   event `message` and answers 200 once handed to the sockets: one HTTP
 *   request per message, like Heartline's `POST /api/publish` and nchan's
 *   publisher location, so publishing costs the same kind of work everywhere.
 *
 *   node socketio-server.mjs [--port 0] [--host 127.0.0.1]
 *
 * Prints `{"msg":"listening","port":N}` on stdout, like `heartline serve`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
  },
});

const MAX_BODY = 65536 + 4096;

const http = createServer({ keepAliveTimeout: 60_000 });
const io = new Server(http, {
  transports: ["websocket"],
  allowUpgrades: false,
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: MAX_BODY,
});

io.on("connection", (socket) => {
  const room = socket.handshake.query.room;
  if (typeof room !== "string" || room === "") {
    socket.disconnect(true);
    return;
  }
  void socket.join(room);
  socket.emit("ready");
});

function answer(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

// Socket.IO answers its own path (/socket.io/); every other request lands here.
http.on("request", (req: IncomingMessage, res: ServerResponse) => {
  if (req.url?.startsWith("/socket.io/")) return;
  const url = new URL(req.url ?? "/", "http://peer.invalid");
  if (req.method !== "POST" || url.pathname !== "/publish") {
    answer(res, 404, { error: "not found" });
    return;
  }
  const room = url.searchParams.get("room");
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.on("end", () => {
    if (!room || size > MAX_BODY) {
      answer(res, 400, { error: "bad request" });
      return;
    }
    let data: unknown;
    try {
      data = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      answer(res, 400, { error: "bad json" });
      return;
    }
    io.to(room).emit("message", data);
    answer(res, 200, { room });
  });
});

http.listen(Number(values.port), values.host, () => {
  const { port } = http.address() as AddressInfo;
  process.stdout.write(JSON.stringify({ msg: "listening", port }) + "\n");
});

const stop = (): void => {
  void io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
