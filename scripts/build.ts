/**
 * `npm run build`: bundles the CLI into one file, dist/cli/arl.mjs (tfjs and all), so it runs where
 * only `node` is present (a GPU box). The wasm backend's .wasm files are copied beside it; Dawn
 * (webgpu) and tfjs-node stay external: point ARL_DAWN_NODE at a dawn.node to use WebGPU.
 * dist/cli/ sits two levels below the repo root, so data/ resolves as it does from src/.
 * Also dist/browser/arl-tfjs-layers.js: the layers of `arl export --format tfjs` models, for web pages,
 * and dist/bench/f16-matmul-bench.mjs, dist/bench/matmul-bench.mjs: the matmul benches of scripts/, for GPU boxes.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { buildBrowserLayers } from './build-browser.ts';

const require = createRequire(import.meta.url);
const outDir = 'dist/cli';
mkdirSync(outDir, { recursive: true });
/** One ESM bundle for node (tfjs and all); native binaries stay external, used from node_modules or ARL_DAWN_NODE. */
const bundle = (entry: string, outfile: string) =>
  build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'node-llama-cpp'],
    // CommonJS dependencies bundled into ESM still expect these.
    banner: {
      js: [
        "import { createRequire as __arlCreateRequire } from 'node:module';",
        "import { fileURLToPath as __arlFileURLToPath } from 'node:url';",
        "import { dirname as __arlDirname } from 'node:path';",
        'const require = __arlCreateRequire(import.meta.url);',
        'const __filename = __arlFileURLToPath(import.meta.url);',
        'const __dirname = __arlDirname(__filename);',
      ].join('\n'),
    },
    logLevel: 'warning',
  });
await bundle('src/cli/main.ts', join(outDir, 'arl.mjs'));
// The matmul benches (f16 tensor-core and f32), for GPU boxes: bash scripts/gpu-run.sh node dist/bench/matmul-bench.mjs
const benchBundles = ['f16-matmul-bench', 'matmul-bench'].map((name) => `dist/bench/${name}.mjs`);
for (const out of benchBundles) await bundle(`scripts/${basename(out, '.mjs')}.ts`, out);
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
for (const f of readdirSync(join(wasmDir, 'dist')).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(wasmDir, 'dist', f), join(outDir, f));
const size = statSync(join(outDir, 'arl.mjs')).size;
console.log(`built ${join(outDir, 'arl.mjs')} (${(size / 2 ** 20).toFixed(1)} MB) and the wasm backend binaries`);
for (const out of benchBundles) console.log(`built ${out} (${(statSync(out).size / 2 ** 20).toFixed(1)} MB)`);
const browserBundle = 'dist/browser/arl-tfjs-layers.js';
await buildBrowserLayers(browserBundle);
console.log(`built ${browserBundle} (${(statSync(browserBundle).size / 2 ** 10).toFixed(0)} KB, registers the tfjs export's layers with the page's tf)`);
