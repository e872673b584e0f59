import { defineConfig } from "vitest/config";

// Every test starts real Holochain conductors (one per agent) and a local
// kitsune2 bootstrap/signal server, so tests are slow and must not overlap:
// one file at a time, one test at a time, generous timeouts.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    // Works around an unhandled EPIPE in tryorama 0.19's conductor setup (see src/setup.ts).
    setupFiles: ["src/setup.ts"],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    fileParallelism: false,
    sequence: { concurrent: false },
    // Conductors are child processes of the worker; a fork (not a thread)
    // keeps their stdio and signals simple.
    pool: "forks",
    reporters: ["verbose"],
    // The conductors' stdout (tryorama logs it at info level) is shown for
    // failing tests only; TRYORAMA_LOG_LEVEL=debug adds tryorama's own trace.
    silent: "passed-only",
  },
});
