/// <reference types="vitest/config" />
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { defineConfig, type Plugin } from "vite";
import vue from "@vitejs/plugin-vue";

// `npm run dev` serves the app with hot reload and hands every API path to the Flask
// API (CLIPYARD_API, default the address `make demo` uses).
const api = process.env.CLIPYARD_API ?? "http://127.0.0.1:8000";

// The API's reference page (/api/docs, backend/blueprints/docs.py) runs Swagger UI 5, the
// first to render OpenAPI 3.1. Its prebuilt files are copied as they are into
// dist/api-docs/ with their licences: bundling them again would only re-minify 1.7 MB.
const SWAGGER_UI_FILES = [
  "swagger-ui-bundle.js",
  "swagger-ui.css",
  "swagger-ui-bundle.js.LICENSE.txt",
  "LICENSE",
  "NOTICE",
];

function apiDocsAssets(): Plugin {
  const folder = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return {
    name: "clipyard-api-docs-assets",
    apply: "build",
    generateBundle() {
      for (const file of SWAGGER_UI_FILES) {
        const source = readFileSync(join(folder, file));
        this.emitFile({ type: "asset", fileName: `api-docs/${file}`, source });
      }
    },
  };
}

export default defineConfig({
  plugins: [vue(), apiDocsAssets()],
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
