/**
 * The f16 groundwork on webgpu: the opt-in device features, the f32 <-> f16 casts, the feature
 * check and the start-up self-check of the tensor-core matmul. On Mesa's lavapipe (CI) the
 * adapter has shader-f16 and subgroups but no subgroup matrices, so the check must name exactly
 * that; on a GPU with them the self-check itself must pass.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { F16_FEATURES, f16Instance, FAST_SHADER_TOGGLES, withDawnFeatures, withF16Toggles } from '../src/ops/webgpu/f16-device.ts';
import {
  disposeF16,
  f16MatmulUnsupported,
  f16TilingProblem,
  f16Workgroups,
  formatTiling,
  fromF16,
  matmulF16Shader,
  parseTiling,
  f16ShaderOverride,
  prepareMatmulF16,
  subgroupMatrixConfigProblem,
  toF16,
  type F16Tiling,
} from '../src/ops/webgpu/matmul-f16.ts';
import { mixedPrecisionSupport } from '../src/ops/webgpu/mixed-precision.ts';
import { dispatchRaw, tryComputePipeline } from '../src/ops/webgpu/runtime.ts';
import { type CausalHint, matmul, runsMixed, setMatmulPrecision } from '../src/ops/matmul.ts';
import { emulateSubgroupMatrices } from './f16-emulation.ts';
import { assertUserError, makeTinyArlInputs, maxAbsDiff, NOT_OURS_ON_WEBGPU, prepareTinyCorpus, REPO_ROOT, runArl, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable({ f16: true });

describe('f16 set-up (no device)', () => {
  it('adds the f16 toggles to one enable-dawn-features option', () => {
    assert.deepEqual(withF16Toggles([]), ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
    assert.deepEqual(withF16Toggles(['backend=vulkan', 'enable-dawn-features=disable_robustness,allow_unsafe_apis']), [
      'backend=vulkan',
      'enable-dawn-features=disable_robustness,allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
    ]);
  });

  it('adds the fast-shader toggles without the f16 ones, and leaves the flags alone when there is nothing to add', () => {
    assert.deepEqual(withDawnFeatures(['backend=vulkan'], FAST_SHADER_TOGGLES), ['backend=vulkan', 'enable-dawn-features=disable_robustness,disable_workgroup_init']);
    assert.deepEqual(withDawnFeatures(['enable-dawn-features=disable_robustness'], FAST_SHADER_TOGGLES), ['enable-dawn-features=disable_robustness,disable_workgroup_init']);
    assert.deepEqual(withDawnFeatures(['backend=vulkan'], []), ['backend=vulkan']);
  });

  it('refuses a listed set of subgroup-matrix configurations without f16 16x16x16, not an empty one', () => {
    const config = (componentType: string, M: number, N: number, K: number) => ({ componentType, resultComponentType: 'f32', M, N, K });
    // Some dawn.node builds list none though the feature works: the numeric self-check decides then.
    assert.equal(subgroupMatrixConfigProblem([]), null);
    assert.equal(subgroupMatrixConfigProblem([config('f16', 16, 8, 16), config('f16', 16, 16, 16)]), null);
    assert.equal(subgroupMatrixConfigProblem([config('F16', 16, 16, 16)]), null);
    const line = subgroupMatrixConfigProblem([config('f16', 16, 8, 16), config('u8', 16, 16, 32)]);
    assert.equal(line, 'the adapter has no f16 x f16 -> f32 16x16x16 subgroup-matrix configuration (it has: f16->f32 16x8x16, u8->f32 16x16x32)');
  });

  it('reads and writes tilings', () => {
    assert.deepEqual(parseTiling('4x2/2x2/32'), { tm: 4, tn: 2, wm: 2, wn: 2, kTile: 32, matrixCopy: false });
    assert.deepEqual(parseTiling('2x2/2x2/32m'), { tm: 2, tn: 2, wm: 2, wn: 2, kTile: 32, matrixCopy: true });
    assert.equal(formatTiling(parseTiling('2x2/1x1/0')), '2x2/1x1/0');
    assert.equal(formatTiling(parseTiling('2x2/2x2/32m')), '2x2/2x2/32m');
    assert.throws(() => parseTiling('2x2'), /TMxTN\/WMxWN\/K/);
  });
});

describe('webgpu f16', { skip }, () => {
  const device = () => (tf.backend() as unknown as { device: { features: { has(f: string): boolean } } }).device;

  it('the device has exactly the f16 features its adapter offers', () => {
    assert.equal(f16Instance.requested, true);
    for (const feature of F16_FEATURES) assert.equal(device().features.has(feature), f16Instance.adapterFeatures.includes(feature), feature);
  });

  it('without the option the device requests none of them (default unchanged)', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'arl-f16-')), 'default-device.mts');
    const tfUrl = pathToFileURL(createRequire(import.meta.url).resolve('@tensorflow/tfjs')).href;
    writeFileSync(
      script,
      [
        `import * as tf from ${JSON.stringify(tfUrl)};`,
        `import { selectBackend } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'src', 'backend.ts')).href)};`,
        `import { f16Instance } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'src', 'ops', 'webgpu', 'f16-device.ts')).href)};`,
        `await selectBackend('webgpu');`,
        `const features = (tf.backend() as any).device.features;`,
        `console.log(JSON.stringify({ requested: f16Instance.requested, has: ${JSON.stringify(F16_FEATURES)}.filter((f) => features.has(f)) }));`,
        `process.exit(0);`,
      ].join('\n'),
    );
    const env = { ...process.env };
    delete env.ARL_WEBGPU_F16;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, env });
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), { requested: false, has: [] });
  });

  it('casts f32 to f16 and back: exact where representable, within half an f16 step elsewhere', async () => {
    const exact = [1, -2, 0.5, 0, 65504, 2 ** -14, 1000.5, -0.25, 3, 7, 11, 13, 17, 19, 23]; // 15: an odd count (3 x 5)
    const x = tf.tensor2d(exact, [3, 5]);
    const x16 = toF16(x);
    const words = tf.engine().makeTensorFromTensorInfo({ ...x16.words });
    const bits = Array.from(new Uint16Array((await words.data<'int32'>()).buffer));
    assert.deepEqual(bits.slice(0, 8), [0x3c00, 0xc000, 0x3800, 0x0000, 0x7bff, 0x0400, 0x63d1, 0xb400]);
    assert.equal(bits[15], 0, 'the odd last element is paired with zero');
    const back = fromF16(x16);
    assert.deepEqual(Array.from(await back.data()), exact);
    tf.dispose([x, back]);
    disposeF16(x16);

    const y = tf.randomNormal([37, 29], 0, 100, 'float32', 7) as tf.Tensor2D;
    const y16 = toF16(y);
    const round = fromF16(y16);
    const [want, got] = [await y.data(), await round.data()];
    want.forEach((v, i) => {
      // f16 keeps 11 significant bits: half a step is 2^-11 of the value (normals here; |y| >= 2^-14 but for a few)
      const bound = Math.max(Math.abs(v) * 2 ** -11, 2 ** -25);
      assert.ok(Math.abs(got[i] - v) <= bound, `element ${i}: ${v} -> ${got[i]}`);
    });
    tf.dispose([y, round]);
    disposeF16(y16);
  });

  it('the matmul shader, its builtins emulated, multiplies right: every transpose case, staged and not, one product and a batch', async (t) => {
    if (!device().features.has('shader-f16') || !device().features.has('subgroups')) {
      t.skip('the adapter lacks shader-f16 or subgroups, which the emulated shader still needs');
      return;
    }
    const subgroup = (tf.backend() as unknown as { device: { adapterInfo: { subgroupMaxSize: number } } }).device.adapterInfo.subgroupMaxSize;
    // K 80 is not a multiple of the 32- and 64-deep slices; N 48 not one of the 32- and 64-wide blocks.
    const [m, k, n] = [64, 80, 48];
    // Each transpose case once unstaged and once staged, and one staged slice copied as matrices (lavapipe takes
    // seconds for each emulated shader, about 30 for the matrix copy).
    const cases: [string, boolean, boolean][] = [
      ['1x1/1x1/0', false, false],
      ['2x2/1x1/0', true, false],
      ['2x1/2x2/0', false, true],
      ['1x2/2x1/0', true, true],
      ['2x2/2x2/32', false, false],
      ['1x2/2x1/16', true, false],
      ['2x2/1x2/64', false, true],
      ['2x1/2x2/32', true, true],
      ['1x1/2x1/32m', true, false],
    ];
    for (const [i, [spec, transposeA, transposeB]] of cases.entries()) {
      const tiling = parseTiling(spec);
      // Every other case a batch of 3 stacked products (attention's layout), the rest one product.
      const batch = i % 2 === 0 ? 1 : 3;
      const lead = batch > 1 ? [batch] : [];
      const a = tf.randomUniform([...lead, ...(transposeA ? [k, m] : [m, k])], -1, 1, 'float32', 3);
      const b = tf.randomUniform([...lead, ...(transposeB ? [n, k] : [k, n])], -1, 1, 'float32', 4);
      const [a16, b16] = [toF16(a), toF16(b)];
      const code = emulateSubgroupMatrices(matmulF16Shader(m, n, k, transposeA, transposeB, tiling, subgroup, batch));
      assert.equal(await tryComputePipeline('emulated', code), null);
      const out = (tf.backend() as unknown as { makeTensorInfo(s: number[], d: tf.DataType): tf.TensorInfo }).makeTensorInfo([...lead, m, n], 'float32');
      dispatchRaw('emulated', code, [out, a16.words, b16.words], [{ type: 'uint32', data: [16] }], f16Workgroups(m, n, tiling, batch));
      const got = tf.engine().makeTensorFromTensorInfo(out);
      const [aWide, bWide] = [fromF16<tf.Tensor2D | tf.Tensor3D>(a16), fromF16<tf.Tensor2D | tf.Tensor3D>(b16)];
      const want = tf.matMul(aWide, bWide, transposeA, transposeB);
      assert.deepEqual(got.shape, want.shape);
      const diff = maxAbsDiff(await got.data(), await want.data());
      assert.ok(diff < 1e-4, `${spec} batch ${batch} transposeA ${transposeA} transposeB ${transposeB}: max |diff| ${diff}`);
      tf.dispose([a, b, got, aWide, bWide, want]);
      disposeF16(a16);
      disposeF16(b16);
    }
  });

  it('the matmul shader, its builtins emulated, skips the tiles causality zeroes in attention\'s products, staged and not', async (t) => {
    if (!device().features.has('shader-f16') || !device().features.has('subgroups')) {
      t.skip('the adapter lacks shader-f16 or subgroups, which the emulated shader still needs');
      return;
    }
    const subgroup = (tf.backend() as unknown as { device: { adapterInfo: { subgroupMaxSize: number } } }).device.adapterInfo.subgroupMaxSize;
    const [seq, rows, hd, batch] = [64, 2 * 64, 32, 2]; // 2 query heads of 64 tokens on one key head
    const where = (keep: (t: number, j: number) => boolean): tf.Tensor2D =>
      tf.tensor2d(Array.from({ length: rows * seq }, (_, i) => Number(keep(Math.floor(i / seq) % seq, i % seq))), [rows, seq]);
    // p is not zero above the diagonal, as probabilities would be: a product told it is causal reads only the tiles it needs.
    const [p, q, keys, x] = [[batch, rows, seq], [batch, rows, hd], [batch, seq, hd], [batch, rows, hd]].map((shape, i) => tf.randomUniform(shape, -1, 1, 'float32', 20 + i));
    const product = async (a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean, tiling: F16Tiling, causal: CausalHint): Promise<Float32Array> => {
      const [, rowsA, colsA] = a.shape as number[];
      const [m, k] = transposeA ? [colsA, rowsA] : [rowsA, colsA];
      const n = (transposeB ? b.shape[1] : b.shape[2]) as number;
      const [a16, b16] = [toF16(a), toF16(b)];
      const code = emulateSubgroupMatrices(matmulF16Shader(m, n, k, transposeA, transposeB, tiling, subgroup, batch, causal));
      const out = (tf.backend() as unknown as { makeTensorInfo(s: number[], d: tf.DataType): tf.TensorInfo }).makeTensorInfo([batch, m, n], 'float32');
      dispatchRaw('emulated', code, [out, a16.words, b16.words], [{ type: 'uint32', data: [16] }], f16Workgroups(m, n, tiling, batch));
      const got = tf.engine().makeTensorFromTensorInfo(out);
      const values = (await got.data()) as Float32Array;
      tf.dispose(got);
      disposeF16(a16);
      disposeF16(b16);
      return values;
    };
    /** f32 product of the operands as f16 rounds them. */
    const exact = async (a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): Promise<Float32Array> => {
      const [a16, b16] = [toF16(a), toF16(b)];
      const [aWide, bWide] = [fromF16<tf.Tensor3D>(a16), fromF16<tf.Tensor3D>(b16)];
      const want = tf.matMul(aWide, bWide, transposeA, transposeB);
      const values = (await want.data()) as Float32Array;
      tf.dispose([aWide, bWide, want]);
      disposeF16(a16);
      disposeF16(b16);
      return values;
    };
    for (const spec of ['2x1/1x2/16', '1x1/2x1/0']) {
      const tiling = parseTiling(spec);
      const [bm, bn] = [16 * tiling.tm * tiling.wm, 16 * tiling.tn * tiling.wn];
      const read = where((t, j) => Math.floor(j / bm) <= Math.floor(t / bm));
      const computed = where((t, j) => Math.floor(j / bn) * bn < (Math.floor(t / bm) + 1) * bm);
      const pRead = tf.mul(p, read);
      const checks: [string, Float32Array, Float32Array][] = [
        ['queries', await product(p, keys, false, false, tiling, { causal: 'queries', seq }), await exact(pRead, keys, false, false)],
        ['keys', await product(p, x, true, false, tiling, { causal: 'keys', seq }), await exact(pRead, x, true, false)],
        ['scores', await product(q, keys, false, true, tiling, { causal: 'scores', seq }), await exact(q, keys, false, true)],
      ];
      const tiled = tf.tile(computed, [batch, 1]);
      const scoresMask = (await tiled.data()) as Float32Array;
      checks[2][2] = checks[2][2].map((v, i) => v * scoresMask[i]);
      for (const [what, got, want] of checks) assert.ok(maxAbsDiff(got, want) < 1e-3, `${spec} ${what}: max |diff| ${maxAbsDiff(got, want)}`);
      tf.dispose([read, computed, pRead, tiled]);
    }
    tf.dispose([p, q, keys, x]);
  });

  it('a shader that does not compile is reported, not fatal', async () => {
    const error = await tryComputePipeline('broken', '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }');
    assert.ok(error && /error/i.test(error), String(error));
    await new Promise((resolve) => setTimeout(resolve, 200)); // an uncaptured error would end the process here
  });

  it('the feature check names exactly the missing features, on one line', () => {
    const missing = F16_FEATURES.filter((f) => !device().features.has(f));
    const line = f16MatmulUnsupported();
    if (missing.length === 0) return; // a GPU with all three: the self-check below decides
    assert.ok(line, 'a device without the features is reported');
    assert.doesNotMatch(line, /\n/);
    assert.match(line, new RegExp(`lacks ${missing.join(', ')}[ :]`));
  });

  it('tilings beyond the device limits are refused with the reason', () => {
    assert.equal(f16TilingProblem(parseTiling('2x2/1x1/0')), null);
    assert.match(f16TilingProblem(parseTiling('2x2/1x1/48'))!, /kTile/);
    assert.match(f16TilingProblem(parseTiling('2x2/1x1/0m'))!, /matrix copy needs a staged slice/);
    assert.match(f16TilingProblem(parseTiling('8x8/4x4/64'))!, /invocations per workgroup|workgroup memory/);
  });

  it('the self-check passes where the kernel is supported, else refuses with one line', async () => {
    const unsupported = f16MatmulUnsupported();
    const result = await mixedPrecisionSupport();
    if (unsupported === null) {
      assert.ok(result.ok, result.ok ? '' : result.reason);
      return;
    }
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.reason, `mixed precision unavailable: ${unsupported}`);
    assert.equal(await prepareMatmulF16(64, 64, 64), unsupported);
  });
});

describe('mixed precision on webgpu', { skip }, () => {
  const hasMatrices = () => (tf.backend() as unknown as { device: { features: { has(f: string): boolean } } }).device.features.has('chromium-experimental-subgroup-matrix');

  it('--precision mixed is refused with one line (exit 2) where the adapter lacks subgroup matrices', async (t) => {
    if (hasMatrices()) {
      t.skip('this adapter has subgroup matrices: the self-check decides');
      return;
    }
    const data = await prepareTinyCorpus();
    const out = join(mkdtempSync(join(tmpdir(), 'arl-mixed-')), 'run');
    const arlInputs = await makeTinyArlInputs(join(out, '..'), 1);
    const runs = [
      await runArl('bench', '--backend', 'webgpu', '--precision', 'mixed', '--steps', '1', '--skip-generate', '--no-key-tokens', '--no-lift'),
      await runArl('train', '--backend', 'webgpu', '--precision', 'mixed', '--data', data, '--out', out, '--steps', '1'),
      // The features are asked for by every command that takes --precision, so the refusal names the adapter, not the request.
      await runArl('recap-data', '--backend', 'webgpu', '--precision', 'mixed', '--corpus', arlInputs.corpus, '--checkpoint', arlInputs.checkpoint, '--out', join(out, 'recaps'), '--recapper', 'extractive'),
    ];
    for (const r of runs) {
      assertUserError(r, /^arl: --precision mixed: mixed precision unavailable: the WebGPU adapter lacks chromium-experimental-subgroup-matrix/, NOT_OURS_ON_WEBGPU);
      assert.equal(r.stdout.includes('"bench":"train"'), false, 'no training ran');
    }
  });

  it('the matmul op in mixed precision, builtins emulated: value and both gradients within f16 rounding of f32', async (t) => {
    const features = (tf.backend() as unknown as { device: { features: { has(f: string): boolean } } }).device.features;
    if (!features.has('shader-f16') || !features.has('subgroups')) {
      t.skip('the emulated shader still needs shader-f16 and subgroups');
      return;
    }
    if (!hasMatrices()) f16ShaderOverride.rewrite = (code) => ({ code: emulateSubgroupMatrices(code), uniforms: [{ type: 'uint32', data: [16] }] });
    setMatmulPrecision('mixed');
    try {
      // The model's two layouts: x w (projections) and x e^T (the tied LM head).
      for (const transposeB of [false, true]) {
        const [m, k, n] = [32, 48, 64];
        const a = tf.randomUniform([m, k], -1, 1, 'float32', 11) as tf.Tensor2D;
        const b = tf.randomUniform(transposeB ? [n, k] : [k, n], -1, 1, 'float32', 12) as tf.Tensor2D;
        const weights = tf.randomUniform([m, n], -1, 1, 'float32', 13);
        assert.equal(runsMixed(a, b), true);
        const loss = (f: typeof matmul) => (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D, y as tf.Tensor2D, false, transposeB), weights));
        const reference = (x: tf.Tensor2D, y: tf.Tensor2D, tA = false, tB = false) => tf.matMul(x, y, tA, tB) as tf.Tensor2D;
        const before = tf.memory().numTensors;
        const got = tf.tidy(() => [matmul(a, b, false, transposeB), ...tf.grads(loss(matmul))([a, b])]);
        const want = tf.tidy(() => [tf.matMul(a, b, false, transposeB), ...tf.grads(loss(reference))([a, b])]);
        for (const [i, name] of ['value', 'dA', 'dB'].entries()) {
          const [g, w] = [await got[i].data(), await want[i].data()];
          const scale = Math.max(...Array.from(w, Math.abs));
          const diff = maxAbsDiff(g, w);
          // f16 operands keep 11 significant bits: each product is off by about 2^-11 relative.
          assert.ok(diff < 4e-3 * scale, `transposeB ${transposeB} ${name}: max |diff| ${diff} of ${scale}`);
          assert.ok(diff > 0, `transposeB ${transposeB} ${name}: identical to f32, so the f16 path did not run`);
        }
        tf.dispose([...got, ...want, a, b, weights]);
        assert.equal(tf.memory().numTensors, before - 3);
      }
    } finally {
      setMatmulPrecision('fp32');
      f16ShaderOverride.rewrite = null;
    }
  });
});
