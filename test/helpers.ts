/** Shared test set-up: the deterministic pure-JS cpu backend, and paths to fixtures. */
import * as tf from '@tensorflow/tfjs';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend, type BackendOptions } from '../src/backend.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const TEST_FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

export async function useCpu(): Promise<void> {
  await selectBackend('cpu');
}

/**
 * Selects webgpu; returns false, or why not (a reason for `skip`) when there is no adapter. With
 * ARL_REQUIRE_WEBGPU=1 (CI, where .ci/run installs Mesa's lavapipe) a missing adapter throws.
 */
export async function webgpuUnavailable(options: BackendOptions = {}): Promise<string | false> {
  try {
    await selectBackend('webgpu', options);
    return false;
  } catch (err) {
    const reason = `no WebGPU adapter here (${(err as Error).message.split('\n')[0]}); install Mesa's lavapipe as .ci/run does`;
    if (process.env.ARL_REQUIRE_WEBGPU === '1') throw new Error(`ARL_REQUIRE_WEBGPU=1 but ${reason}`);
    return reason;
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export { tf };

/** A small prepared corpus (the first Brown documents, the bundled tokenizer unless `tokenizerPath`) in a temp dir. */
export async function prepareTinyCorpus(docs = 12, tokenizerPath?: string): Promise<string> {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { readBrownDocuments } = await import('../src/data/brown.ts');
  const { prepareCorpus } = await import('../src/data/prepare.ts');
  const { Tokenizer, BUNDLED_TOKENIZER_PATH } = await import('../src/tokenizer/sentencepiece.ts');
  const dir = mkdtempSync(join(tmpdir(), 'arl-test-'));
  const lines: string[] = [];
  for (const doc of readBrownDocuments()) {
    lines.push(JSON.stringify({ text: doc.text }));
    if (lines.length === docs) break;
  }
  writeFileSync(join(dir, 'corpus.jsonl'), `${lines.join('\n')}\n`);
  const tokenizer = await Tokenizer.load(tokenizerPath ?? BUNDLED_TOKENIZER_PATH);
  await prepareCorpus({ source: join(dir, 'corpus.jsonl'), tokenizer, outDir: join(dir, 'prepared'), valFraction: 0.2, seed: 1 });
  return join(dir, 'prepared');
}

/** The bundled tokenizer with one piece renamed: the same vocabulary size, another sha256, other ids for "the". */
export async function writeOtherTokenizer(path: string): Promise<string> {
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { BUNDLED_TOKENIZER_PATH } = await import('../src/tokenizer/sentencepiece.ts');
  const model = readFileSync(BUNDLED_TOKENIZER_PATH).toString('latin1');
  const the = Buffer.from('\u2581the').toString('latin1');
  writeFileSync(path, Buffer.from(model.replace(the, Buffer.from('\u2581qzx').toString('latin1')), 'latin1'));
  return path;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/arl.js ...args` from the repo root (colour off) and returns its exit code and output. */
export async function runArl(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'bin', 'arl.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, FORCE_COLOR: '0' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as CliResult;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Lines on stderr that are not the command's own on a webgpu run: the backend note and Dawn's warnings about the adapter's limits. */
export const NOT_OURS_ON_WEBGPU = /^(backend:|Warning:)/;

/**
 * Exit code 2 and exactly one line on stderr (besides the lines `notOurs` matches: by default the backend note) matching
 * `pattern`, no stack trace.
 */
export function assertUserError(r: CliResult, pattern: RegExp, notOurs = /^backend:/): void {
  const lines = r.stderr.trim().split('\n').filter((l) => !notOurs.test(l));
  assert.equal(r.code, 2, r.stderr);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

/**
 * Inputs for the ARL commands in `dir`: a random checkpoint (bundled tokenizer, window 64, so S = 16
 * and W = 48 by default) and corpus.jsonl with the first `docs` Brown documents cut to 110 words.
 */
export async function makeTinyArlInputs(dir: string, docs = 3): Promise<{ checkpoint: string; corpus: string }> {
  const { writeFileSync } = await import('node:fs');
  const { readBrownDocuments } = await import('../src/data/brown.ts');
  const { saveCheckpoint } = await import('../src/io/checkpoint.ts');
  const { makeConfig } = await import('../src/model/config.ts');
  const { LlamaModel } = await import('../src/model/llama.ts');
  const { BUNDLED_TOKENIZER_PATH } = await import('../src/tokenizer/sentencepiece.ts');
  const checkpoint = join(dir, 'ckpt');
  const corpus = join(dir, 'corpus.jsonl');
  const model = new LlamaModel(makeConfig(null, { vocabSize: 4096, dim: 32, layers: 2, heads: 4, kvHeads: 2, maxSeq: 64 }), 3);
  await saveCheckpoint(checkpoint, model, BUNDLED_TOKENIZER_PATH);
  model.dispose();
  const texts = [...readBrownDocuments()].slice(0, docs).map((d) => d.text.split(' ').slice(0, 110).join(' '));
  writeFileSync(corpus, texts.map((text) => JSON.stringify({ text })).join('\n'));
  return { checkpoint, corpus };
}

/**
 * makeTinyArlInputs plus ARL steps 1 and 2 run on them into `<dir>/arl` (every candidate kept, margin
 * -1e9, so there are segments to recap even with an untrained model).
 */
export async function makeTinyArlSegments(dir: string, docs: number): Promise<{ checkpoint: string; corpus: string; arlDir: string }> {
  const { findKeyTokens, keyTokenOptions } = await import('../src/arl/key-tokens.ts');
  const { findRelevantSegments } = await import('../src/arl/relevant-segment.ts');
  const { loadModel } = await import('../src/io/checkpoint.ts');
  const { BUNDLED_TOKENIZER_PATH, Tokenizer } = await import('../src/tokenizer/sentencepiece.ts');
  const arlDir = join(dir, 'arl');
  const { checkpoint, corpus } = await makeTinyArlInputs(dir, docs);
  const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const { model } = loadModel(checkpoint);
  try {
    await findKeyTokens({ model, tokenizer, checkpoint, corpus, outDir: arlDir, options: keyTokenOptions(model.config.maxSeq) });
    await findRelevantSegments({ model, tokenizer, checkpoint, keyTokensDir: arlDir, options: { margin: -1e9 } });
  } finally {
    model.dispose();
  }
  return { checkpoint, corpus, arlDir };
}

/**
 * A model whose weights are scaled up from the usual 0.02 init (and whose norm weights vary), so
 * attention is sharp and position-dependent and the logits are far from ties: in export checks a
 * rope-layout or tensor-mapping mistake then changes the output instead of hiding in near-uniform attention.
 */
export function sharpModel(config: ModelConfig): LlamaModel {
  const model = new LlamaModel(config, 7);
  for (const { name, variable } of model.namedWeights()) {
    tf.tidy(() => {
      const w = variable.read();
      if (name.endsWith('norm.weight')) variable.write(tf.add(1, tf.mul(0.3, tf.randomNormal(w.shape, 0, 1, 'float32', 3))));
      else variable.write(tf.mul(w, /q_proj|k_proj/.test(name) ? 12 : 4));
    });
  }
  return model;
}
