// Witness submission page script (placeholder).
//
// TODO(witness-site): wire the form: on submit, for the testimony (framing "testimony")
// and each attachment (framing "attachment"), call encryptInWorker with the desk's
// recipients (rendered into the page by the server) and upload each chunk in order to
// the resumable upload API, then commit. Without JavaScript the plain form still posts
// to the server, which seals the parts itself; this script only adds client-side
// encryption on top.

import { encryptInWorker } from "./encrypt-client.js";

export { encryptInWorker };

/** URL of the built worker next to this script (same origin, allowed by script-src 'self'). */
export const WORKER_URL = new URL("./worker.js", import.meta.url).href;
