/**
 * What LIFT's adapters share: per-block hooks into the decoder (src/model/llama.ts BlockAdapter),
 * their own variables (the base model's stay frozen), and attaching/removing them.
 */
import * as tf from '@tensorflow/tfjs';
import type { BlockAdapter, LlamaModel } from '../model/llama.ts';

export const ADAPTER_KINDS = ['gated-memory', 'lora'] as const;
export type AdapterKind = (typeof ADAPTER_KINDS)[number];

export interface ModelAdapter {
  readonly kind: AdapterKind;
  /** Hyperparameters that fix the weight shapes (stored in the adapter file). */
  readonly settings: Record<string, number>;
  /** One hook per decoder block, in block order. */
  readonly blocks: BlockAdapter[];
  /** Trainable weights by name in a stable order (optimizer and file order). */
  namedWeights(): { name: string; variable: tf.Variable }[];
  dispose(): void;
}

export function adapterVariables(adapter: ModelAdapter): tf.Variable[] {
  return adapter.namedWeights().map((w) => w.variable);
}

export function adapterParameterCount(adapter: ModelAdapter): number {
  return adapter.namedWeights().reduce((sum, w) => sum + w.variable.size, 0);
}

export function attachAdapter(model: LlamaModel, adapter: ModelAdapter): void {
  if (adapter.blocks.length !== model.blocks.length) throw new Error(`adapter has ${adapter.blocks.length} blocks, the model ${model.blocks.length}`);
  model.blocks.forEach((block, i) => (block.adapter = adapter.blocks[i]));
}

/** Removes any adapter: the model computes exactly what the base model does. */
export function detachAdapter(model: LlamaModel): void {
  for (const block of model.blocks) block.adapter = null;
}

/** A trainable variable initialised by `init` (seeded), named for error messages and files. */
export function adapterVariable(name: string, shape: number[], init: ReturnType<typeof tf.initializers.zeros>): tf.Variable {
  return tf.tidy(() => tf.variable(init.apply(shape, 'float32'), true, `${name}_${adapterVariableId++}`));
}
let adapterVariableId = 0;

/** SiLU(x) = x * sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}
