/**
 * The head of a plain `GET` request, read from the bytes of a kept-alive
 * connection. Heartline reads the next request itself only after a long poll
 * answered on the bare socket (see transports/bare.ts), and only when it is
 * unremarkable: anything this reader does not accept goes to node:http
 * unread, which then parses and answers it as it would any request. So this
 * reader never answers an error and never has to agree with node:http on an
 * odd case: it only has to be strict.
 *
 * Accepted: the whole head in the bytes at hand, at most `maxBytes` long
 * (node:http's maxHeaderSize); the request line `GET <target> HTTP/1.1` (or
 * `1.0`) with a target of visible ASCII starting with `/`; header fields
 * `token ":" OWS value OWS`, each value of visible characters, spaces and
 * tabs (and bytes 0x80–0xFF, read as Latin-1, as node:http reads them); at
 * most 100 fields; no `Content-Length`, `Transfer-Encoding`, `Expect` or
 * `Upgrade`; for HTTP/1.1 exactly one `Host`. Not accepted, and so left to
 * node:http: a folded line, a bare CR or LF, a control character, an empty
 * or odd field name, a head split over several reads.
 */

/** A plain GET request's head: what node:http would have put on its IncomingMessage. */
export interface PlainGet {
  /** The request target, as received. */
  target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** Field names and values in order, names as received, values without surrounding spaces (node's `rawHeaders`). */
  raw: string[];
  /** Bytes the head takes, up to and with its blank line; what follows belongs to the next request. */
  length: number;
}

const MAX_FIELDS = 100;
/** Read with `lastIndex` (sticky): no copy of each line is made. */
const REQUEST_LINE = /^GET (\/[\x21-\x7e]*) HTTP\/1\.([01])\r\n/y;
/** A field and its CRLF: a token, a colon, and a value of tabs, spaces, visible ASCII and obs-text (no CR, LF or other control). */
const FIELD = /([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*\r\n/y;

/** The plain GET request at the start of `bytes`, or undefined when it is not one (or not whole). */
export function readPlainGet(bytes: Buffer, maxBytes: number): PlainGet | undefined {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0 || end + 4 > maxBytes) return undefined;
  // The head with the CRLF of its last line.
  const text = bytes.toString("latin1", 0, end + 2);
  REQUEST_LINE.lastIndex = 0;
  const first = REQUEST_LINE.exec(text);
  if (first === null) return undefined;
  const minor = first[2] === "1" ? 1 : 0;
  const raw: string[] = [];
  let hosts = 0;
  let at = REQUEST_LINE.lastIndex;
  while (at < text.length) {
    if (raw.length === 2 * MAX_FIELDS) return undefined;
    FIELD.lastIndex = at;
    // (A folded line, a bare CR or LF, a control character fail the pattern.)
    const f = FIELD.exec(text);
    if (f === null) return undefined;
    at = FIELD.lastIndex;
    const name = f[1]!;
    if (name.length >= 4 && name.length <= 17) {
      switch (name.toLowerCase()) {
        case "content-length":
        case "transfer-encoding":
        case "expect":
        case "upgrade":
          return undefined;
        case "host":
          hosts++;
          break;
      }
    }
    raw.push(name, f[2]!);
  }
  if (minor === 1 ? hosts !== 1 : hosts > 1) return undefined;
  return { target: first[1]!, minor, raw, length: end + 4 };
}
