import { defineConfig } from "vite";
import preact from "@preact/preset-vite";
import { sourceHashPlugin } from "./source-hash.mjs";

// The build lands in libgo-http/web/, which libgo-server embeds (rust-embed) and serves at `/`.
export default defineConfig({
  plugins: [preact(), sourceHashPlugin()],
  base: "/",
  build: {
    outDir: "../libgo-http/web",
    emptyOutDir: true,
    target: "es2022",
    // Fonts and icons stay files: the server's CSP allows no data: fonts.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 700,
  },
});
