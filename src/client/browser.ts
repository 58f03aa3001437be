/**
 * Entry of the browser bundle served as `/heartline.js`:
 * `import { Heartline } from "/heartline.js"`. It turns cross-tab sharing on
 * (clients made without `shared: false` share one connection per origin),
 * and, loaded as a SharedWorker, serves the tabs.
 */
import { installSharing } from "./shared.js";

export * from "./index.js";

installSharing();
