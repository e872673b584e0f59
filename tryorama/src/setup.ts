// tryorama 0.19 (lib/conductor.js, Conductor.create) writes the lair
// passphrase to the stdin of `hc sandbox --piped create` without an error
// listener. When hc has already read its line and closed stdin, which happens
// on a loaded machine, the late EPIPE surfaces as an uncaught exception and
// vitest fails the run although every test passed (seen once in CI here,
// 6 of 6 tests green). Give each spawned process's stdin a listener that
// swallows EPIPE and nothing else: if hc really died, tryorama's own promise
// still rejects on its stderr, or the missing conductor fails the test.
import { createRequire, syncBuiltinESMExports } from "node:module";
import type { ChildProcess } from "node:child_process";

const require = createRequire(import.meta.url);
const childProcess = require("node:child_process") as typeof import("node:child_process");
const spawn = childProcess.spawn;

function spawnWithQuietEpipe(this: unknown, ...args: unknown[]): ChildProcess {
  const child = (spawn as (...a: unknown[]) => ChildProcess).apply(this, args);
  child.stdin?.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
  });
  return child;
}

(childProcess as { spawn: unknown }).spawn = spawnWithQuietEpipe;
// ESM importers (tryorama imports { spawn } from "node:child_process") see the patched export.
syncBuiltinESMExports();
