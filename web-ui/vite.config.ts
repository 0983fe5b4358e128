// Vite builds the app into dist/, which the panoptes binary serves at `/`
// (`[http] ui_dir`). JSX goes through esbuild with Preact's automatic runtime.
//
// Development: `PANOPTES_URL=http://127.0.0.1:8080 npm run dev` proxies /api to a
// running panoptes.
import { defineConfig } from 'vitest/config';

const target = process.env.PANOPTES_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: { '/api': { target, changeOrigin: false } },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
