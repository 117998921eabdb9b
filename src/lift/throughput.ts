/**
 * The LIFT line of `arl bench`: training time per 1,000 input tokens for the tiny preset (window
 * 256, default segmentation and contextualized training), and the adapter's size, per adapter kind.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBrownDocuments } from '../data/brown.ts';
import { makeConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../tokenizer/sentencepiece.ts';
import { type AdapterKind, adapterParameterCount, detachAdapter } from './adapter.ts';
import { saveAdapter } from './adapter-file.ts';
import { LIFT_DEFAULTS, trainLiftAdapter } from './lift.ts';

export async function measureLiftThroughput(kind: AdapterKind, inputTokens = 1000): Promise<Record<string, unknown>> {
  const tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
  const input: number[] = [];
  for (const doc of readBrownDocuments()) {
    input.push(...tokenizer.encode(doc.text));
    if (input.length >= inputTokens) break;
  }
  input.length = inputTokens;
  const config = makeConfig('tiny', { vocabSize: tokenizer.vocabSize });
  const model = new LlamaModel(config);
  const dir = mkdtempSync(join(tmpdir(), 'lift-bench-'));
  try {
    // One epoch timed; the paper's schedule is stage1Epochs + stage2Epochs of them (plus its QA examples).
    const { adapter, seconds, segments } = await trainLiftAdapter(model, tokenizer, input, { adapter: kind, stage1Epochs: 1, stage2Epochs: 0 });
    detachAdapter(model);
    const file = join(dir, 'adapter.safetensors');
    await saveAdapter(file, adapter, 'bench');
    const perEpoch = (seconds * 1000) / inputTokens;
    const result = {
      bench: 'lift',
      adapter: kind,
      model: 'tiny preset',
      input_tokens: inputTokens,
      segments,
      s_per_1k_input_tokens_per_epoch: perEpoch,
      s_per_1k_input_tokens_paper_schedule: perEpoch * (LIFT_DEFAULTS.stage1Epochs + LIFT_DEFAULTS.stage2Epochs),
      adapter_parameters: adapterParameterCount(adapter),
      adapter_file_bytes: statSync(file).size,
    };
    adapter.dispose();
    return result;
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}
