/** The README's HAProxy configuration, run against a real HAProxy. */
import { proxySuite } from "./suite.js";

proxySuite("haproxy");
