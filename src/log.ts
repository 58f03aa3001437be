/** JSON-lines logging (pino) to stdout; one logger per Heartline instance. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, messageKey: "msg" });
}
