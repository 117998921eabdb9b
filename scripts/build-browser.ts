/**
 * The browser bundle of our tfjs layers (src/io/tfjs-layers.ts): one classic script that registers
 * the custom layers of an `arl export --format tfjs` model with the page's global `tf`
 * (@tensorflow/tfjs loaded by its own script tag before it), so tf.loadLayersModel can build them.
 * tfjs itself is not bundled, and our JS kernels stay unregistered: the page runs the tfjs-op compositions.
 */
import { build, type Plugin } from 'esbuild';

const browserShims: Plugin = {
  name: 'arl-browser-shims',
  setup(b) {
    b.onResolve({ filter: /^@tensorflow\/tfjs$/ }, () => ({ path: 'tf', namespace: 'global-tf' }));
    b.onLoad({ filter: /.*/, namespace: 'global-tf' }, () => ({ contents: 'module.exports = globalThis.tf;', loader: 'js' }));
    b.onResolve({ filter: /\/ops\/js\/index\.ts$/ }, () => ({ path: 'js-kernels', namespace: 'no-js-kernels' }));
    b.onLoad({ filter: /.*/, namespace: 'no-js-kernels' }, () => ({ contents: 'export function registerJsKernels() {}', loader: 'js' }));
  },
};

/** Writes the bundle to `outfile`. */
export async function buildBrowserLayers(outfile: string): Promise<void> {
  await build({
    entryPoints: ['src/io/tfjs-layers.ts'],
    absWorkingDir: new URL('..', import.meta.url).pathname,
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    outfile,
    plugins: [browserShims],
    logLevel: 'warning',
  });
}
