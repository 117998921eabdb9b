/** `arl import` (Hugging Face Llama -> checkpoint) and `arl export` (checkpoint -> Hugging Face, GGUF). */
import chalk from 'chalk';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadModel, saveCheckpoint, writeCheckpoint } from '../io/checkpoint.ts';
import { UserError } from '../io/errors.ts';
import { writeGguf } from '../io/gguf.ts';
import { hfSourceTensors, hfWeights, readHfCheckpoint } from '../io/hf.ts';
import { exportTfjs } from '../io/tfjs-export.ts';
import { parameterCount } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { loadModelAndTokenizer, startBackend } from './common.ts';
import { defineCommand } from './options.ts';

export const importCommand = defineCommand({
  command: 'import',
  describe: 'Import a Hugging Face Llama checkpoint directory (config.json + safetensors)',
  options: {
    hf: { type: 'string', demandOption: true, describe: 'Hugging Face model directory' },
    out: { type: 'string', demandOption: true, describe: 'checkpoint directory to write' },
  },
  examples: [['$0 import --hf ~/models/TinyLlama --out checkpoints/tinyllama', 'import, then train --init or generate from it']],
  handler: async ({ hf, out }) => {
    if (!existsSync(hf)) throw new UserError(`${hf}: no such directory`);
    await startBackend('cpu');
    const { config, tensors } = readHfCheckpoint(hf);
    const model = new LlamaModel(config, null);
    try {
      const tokenizer = join(hf, 'tokenizer.model');
      await writeCheckpoint(out, model, hfSourceTensors(model, tensors, hf), existsSync(tokenizer) ? tokenizer : null);
    } finally {
      model.dispose();
    }
    console.log(`${chalk.green('imported')} ${hf} -> ${out} (${(parameterCount(config) / 1e6).toFixed(2)}M parameters, ${config.layers} layers, ${config.heads}/${config.kvHeads} heads)`);
  },
});

/** Writes a checkpoint as a Hugging Face directory (weights, config and tokenizer files; no training state). */
async function exportHf(checkpoint: string, out: string): Promise<void> {
  const { model, ckpt } = loadModel(checkpoint);
  try {
    await saveCheckpoint(out, model, ckpt.tokenizerPath);
  } finally {
    model.dispose();
  }
}

/** Writes a checkpoint as one GGUF file (F32) for llama.cpp. */
async function exportGguf(checkpoint: string, out: string, tokenizerPath: string | undefined): Promise<string> {
  const { model, tokenizer, checkpointDir } = await loadModelAndTokenizer(checkpoint, { tokenizer: tokenizerPath, needTokenizer: false });
  try {
    const { tensors, bytes } = writeGguf(out, model.config, await hfWeights(model), tokenizer, basename(checkpointDir));
    return `GGUF v3, llama architecture, ${tensors} F32 tensors, ${(bytes / 2 ** 20).toFixed(1)} MiB`;
  } finally {
    model.dispose();
  }
}

/** Writes a checkpoint as a tfjs LayersModel folder for the browser. */
async function exportTfjsFolder(checkpoint: string, out: string): Promise<string> {
  const { model, ckpt } = loadModel(checkpoint);
  try {
    const { shards, bytes } = await exportTfjs(model, out, ckpt.tokenizerPath);
    return `tfjs LayersModel, ${shards} weight shard${shards === 1 ? '' : 's'}, ${(bytes / 2 ** 20).toFixed(1)} MiB; register the layers with dist/browser/arl-tfjs-layers.js (npm run build)`;
  } finally {
    model.dispose();
  }
}

export const exportCommand = defineCommand({
  command: 'export',
  describe: 'Export a checkpoint (hf: Hugging Face Llama directory; gguf: one file for llama.cpp; tfjs: LayersModel folder for the browser)',
  options: {
    checkpoint: { type: 'string', demandOption: true, describe: 'checkpoint or run directory to export' },
    format: { choices: ['hf', 'gguf', 'tfjs'], default: 'hf', describe: 'hf: Hugging Face Llama directory; gguf: one file for llama.cpp; tfjs: LayersModel folder' },
    out: { type: 'string', demandOption: true, describe: 'folder (hf, tfjs) or .gguf file to write' },
    tokenizer: { type: 'string', describe: "SentencePiece .model for the GGUF vocabulary (default: the checkpoint's)" },
  },
  examples: [
    ['$0 export --checkpoint checkpoints/demo --format hf --out exported/demo', 'load it with transformers.AutoModelForCausalLM.from_pretrained'],
    ['$0 export --checkpoint checkpoints/demo --format gguf --out exported/demo.gguf', 'run it with llama.cpp (llama-cli -m exported/demo.gguf)'],
    ['$0 export --checkpoint checkpoints/demo --format tfjs --out exported/demo-tfjs', 'tf.loadLayersModel in a page that loads dist/browser/arl-tfjs-layers.js'],
  ],
  handler: async ({ checkpoint, format, out, tokenizer }) => {
    await startBackend('cpu');
    if (format === 'gguf') {
      if (!out.endsWith('.gguf')) throw new UserError(`--out ${out}: a GGUF export is one file; name it *.gguf`);
      const what = await exportGguf(checkpoint, out, tokenizer);
      console.log(`${chalk.green('exported')} ${checkpoint} -> ${out} (${what})`);
      return;
    }
    if (format === 'tfjs') {
      console.log(`${chalk.green('exported')} ${checkpoint} -> ${out} (${await exportTfjsFolder(checkpoint, out)})`);
      return;
    }
    await exportHf(checkpoint, out);
    console.log(`${chalk.green('exported')} ${checkpoint} -> ${out} (Hugging Face Llama format)`);
  },
});
