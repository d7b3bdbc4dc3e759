#!/usr/bin/env node
// Runs the browser's slow-browser rule (app/web/js/speed-probe.js) under node on the cases
// a test sends on stdin, with a probe that answers the given rates in turn:
//
//   stdin:  [{"rates": [bytes/s, ...], "slowRate": bytes/s, "wasm": bool}, ...]
//   stdout: {"node": likelyJit() here, "cases": [{"jit", "speed", "calls"}, ...]}

import { likelyJit, measuredSpeed } from "../../app/web/js/speed-probe.js";

let input = "";
process.stdin.setEncoding("utf8");
for await (const part of process.stdin) input += part;
const cases = [];
for (const c of JSON.parse(input)) {
  const scope = c.wasm ? { WebAssembly } : {};
  let calls = 0;
  const probe = async () => c.rates[Math.min(calls++, c.rates.length - 1)];
  const speed = await measuredSpeed(probe, c.slowRate, scope);
  cases.push({ jit: likelyJit(scope), speed, calls });
}
process.stdout.write(`${JSON.stringify({ node: likelyJit(), cases })}\n`);
