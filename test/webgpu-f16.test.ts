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
import { F16_FEATURES, f16Instance, withF16Toggles } from '../src/ops/webgpu/f16-device.ts';
import { disposeF16, f16MatmulUnsupported, f16TilingProblem, formatTiling, fromF16, parseTiling, prepareMatmulF16, toF16 } from '../src/ops/webgpu/matmul-f16.ts';
import { mixedPrecisionSupport } from '../src/ops/webgpu/mixed-precision.ts';
import { tryComputePipeline } from '../src/ops/webgpu/runtime.ts';
import { REPO_ROOT, webgpuUnavailable } from './helpers.ts';

const skip = await webgpuUnavailable({ f16: true });

describe('f16 set-up (no device)', () => {
  it('adds the f16 toggles to one enable-dawn-features option', () => {
    assert.deepEqual(withF16Toggles([]), ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
    assert.deepEqual(withF16Toggles(['backend=vulkan', 'enable-dawn-features=disable_robustness,allow_unsafe_apis']), [
      'backend=vulkan',
      'enable-dawn-features=disable_robustness,allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
    ]);
  });

  it('reads and writes tilings', () => {
    assert.deepEqual(parseTiling('4x2/2x2/32'), { tm: 4, tn: 2, wm: 2, wn: 2, kTile: 32 });
    assert.equal(formatTiling(parseTiling('2x2/1x1/0')), '2x2/1x1/0');
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
