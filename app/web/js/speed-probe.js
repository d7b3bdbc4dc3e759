/**
 * Whether this browser encrypts too slowly for a large submission to go unannounced.
 *
 * The page measures the browser before a large submission (submit.js, probeSpeed) and asks
 * the witness before starting only if it is slow. Why a module of its own: the rule decides
 * whether a witness is made to wait or warned, so it is checked under node, without a page
 * (tests/js/speed-probe-check.mjs); the measuring itself needs the worker and stays in the page.
 */

/** Below this encryption speed (bytes/s) a browser is "slow": a JIT-less engine (Tor Browser
 * "Safer") does about 2 MB/s, a JIT engine, even a phone's, usually well over 10 MB/s. */
export const SLOW_RATE = 8e6;

/** How many measurements a rate under the threshold gets before the browser is called slow.
 * A JIT compiles the hot code as it runs, and a moment when the machine was busy passes, so
 * one slow figure is never enough. An engine without a JIT stays slow, and each try costs
 * its witness about half a second, so it gets two. An engine with a JIT gets five: there a
 * slow figure is far more likely a busy moment (a phone's other apps, a loaded machine) than
 * the engine, and a warning it did not need would make a witness wait or give up. */
const TRIES_WITHOUT_JIT = 2;
const TRIES_WITH_JIT = 5;

/** Whether this engine very likely compiles JavaScript to machine code. WebAssembly is the
 * sign: Tor Browser's "Safer" level and V8's JIT-less mode turn it off with the JIT. An
 * engine that keeps WebAssembly without a JIT (an interpreter for it) is only measured a few
 * more times before it is called slow. */
export function likelyJit(scope = globalThis) {
  return typeof scope.WebAssembly === "object";
}

/** The best rate (bytes/s) of calls of `probe`, stopping at the first one at or above
 * `slowRate`: as many as this engine gets (`scope` is the global object whose WebAssembly is
 * the sign, see likelyJit). */
export async function measuredSpeed(probe, slowRate, scope = globalThis) {
  const tries = likelyJit(scope) ? TRIES_WITH_JIT : TRIES_WITHOUT_JIT;
  let speed = 0;
  for (let i = 0; i < tries && speed < slowRate; i += 1) speed = Math.max(speed, await probe());
  return speed;
}
