/** `arl import` (Hugging Face Llama -> checkpoint) and `arl export` (checkpoint -> Hugging Face). */
import chalk from 'chalk';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { loadModel, saveCheckpoint } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { assignHfWeights, readHfCheckpoint } from '../io/hf.ts';
import { parameterCount } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { startBackend } from './common.ts';

export const importCommand: CommandModule = {
  command: 'import',
  describe: 'Import a Hugging Face Llama checkpoint directory (config.json + safetensors)',
  builder: (y) =>
    y
      .option('hf', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
      .option('out', { type: 'string', demandOption: true, describe: 'checkpoint directory to write' })
      .example('$0 import --hf ~/models/TinyLlama --out checkpoints/tinyllama', 'import, then train --init or generate from it'),
  handler: async (argv) => {
    const { hf, out } = argv as unknown as { hf: string; out: string };
    if (!existsSync(hf)) throw new UserError(`${hf}: no such directory`);
    await startBackend('cpu');
    const { config, tensors } = readHfCheckpoint(hf);
    const model = new LlamaModel(config);
    try {
      assignHfWeights(model, tensors, hf);
      const tokenizer = join(hf, 'tokenizer.model');
      await saveCheckpoint(out, model, existsSync(tokenizer) ? tokenizer : null);
    } finally {
      model.dispose();
    }
    console.log(`${chalk.green('imported')} ${hf} -> ${out} (${(parameterCount(config) / 1e6).toFixed(2)}M parameters, ${config.layers} layers, ${config.heads}/${config.kvHeads} heads)`);
  },
};

/** Writes a checkpoint as a Hugging Face directory (weights, config and tokenizer files; no training state). */
async function exportHf(checkpoint: string, out: string): Promise<void> {
  const { model, ckpt } = loadModel(checkpoint);
  try {
    await saveCheckpoint(out, model, ckpt.tokenizerPath);
  } finally {
    model.dispose();
  }
}

export const exportCommand: CommandModule = {
  command: 'export',
  describe: 'Export a checkpoint (hf: Hugging Face Llama directory)',
  builder: (y) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true })
      .option('format', { choices: ['hf', 'gguf', 'tfjs'] as const, default: 'hf' as const })
      .option('out', { type: 'string', demandOption: true })
      .example('$0 export --checkpoint checkpoints/demo --format hf --out exported/demo', 'load it with transformers.AutoModelForCausalLM.from_pretrained'),
  handler: async (argv) => {
    const { checkpoint, format, out } = argv as unknown as { checkpoint: string; format: string; out: string };
    if (format !== 'hf') throw new UserError(`--format ${format}: not available yet; use --format hf`);
    await startBackend('cpu');
    await exportHf(checkpoint, out);
    console.log(`${chalk.green('exported')} ${checkpoint} -> ${out} (Hugging Face Llama format)`);
  },
};
