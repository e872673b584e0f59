import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The dashboard is served by `zerotrustml serve` at `/`: the build goes into the Python package.
export default defineConfig({
  base: "./",
  build: {
    outDir: fileURLToPath(new URL("../python/zerotrustml/service/static", import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 600, // the DHT client (libsodium) loads only as the hApp's UI
  },
});
