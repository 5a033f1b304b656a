// `npm run build` writes dist/, which the broker serves as is:
//   basestation serve --web-root examples/vue/dist
// Relative asset paths (base './') and hash routing, so no server rewrite
// is needed. `basestation` is clients/js (a file: dependency): dedupe makes
// its `import 'vue'` the app's own Vue.
import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

export default defineConfig({
  base: './',
  plugins: [vue()],
  resolve: { dedupe: ['vue'] },
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1500 },
});
