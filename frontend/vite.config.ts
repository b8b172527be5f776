/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// `npm run dev` serves the app with hot reload and hands every API path to the Flask
// API (CLIPYARD_API, default the address `make demo` uses).
const api = process.env.CLIPYARD_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [vue()],
  server: {
    proxy: {
      "/api": { target: api, changeOrigin: false },
      "/healthz": api,
      "/readyz": api,
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Every asset is bundled locally; nothing is fetched from a CDN at run time.
    assetsInlineLimit: 0,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
    restoreMocks: true,
  },
});
