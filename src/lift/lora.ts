/**
 * LoRA (Hu et al. 2021) on every projection of every block, the alternative to Gated Memory that
 * users compare against: W x + (alpha / r) B A x, A [in, r] uniform(+-1/sqrt(in)) (peft's kaiming
 * init), B [r, out] zero, so the adapted model starts exactly at the base model.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../model/config.ts';
import type { BlockAdapter, Projection } from '../model/llama.ts';
import { adapterVariable, type ModelAdapter } from './adapter.ts';

export const LORA_DEFAULTS = { rank: 8, alpha: 16 };

/** [in, out] of each projection. */
function projectionShapes(c: ModelConfig): Record<Projection, [number, number]> {
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  return { q_proj: [c.dim, q], k_proj: [c.dim, kv], v_proj: [c.dim, kv], o_proj: [q, c.dim], gate_proj: [c.dim, c.hiddenDim], up_proj: [c.dim, c.hiddenDim], down_proj: [c.hiddenDim, c.dim] };
}

class LoraBlock implements BlockAdapter {
  readonly pairs: Record<string, { a: tf.Variable; b: tf.Variable }> = {};

  constructor(config: ModelConfig, rank: number, private readonly scale: number, seed: number) {
    for (const [i, [name, [fanIn, fanOut]]] of Object.entries(projectionShapes(config)).entries()) {
      const a = adapterVariable(`lora_a_${name}`, [fanIn, rank], tf.initializers.randomUniform({ minval: -1 / Math.sqrt(fanIn), maxval: 1 / Math.sqrt(fanIn), seed: seed + i }));
      this.pairs[name] = { a, b: adapterVariable(`lora_b_${name}`, [rank, fanOut], tf.initializers.zeros()) };
    }
  }

  projectionDelta(name: Projection, x: tf.Tensor2D): tf.Tensor2D {
    const { a, b } = this.pairs[name];
    return tf.mul(tf.matMul(tf.matMul(x, a), b), this.scale);
  }
}

export class LoraAdapter implements ModelAdapter {
  readonly kind = 'lora' as const;
  readonly settings: Record<string, number>;
  readonly blocks: LoraBlock[];

  constructor(config: ModelConfig, opts: { rank: number; alpha: number } = LORA_DEFAULTS, seed = 0) {
    this.settings = { rank: opts.rank, alpha: opts.alpha };
    this.blocks = Array.from({ length: config.layers }, (_, i) => new LoraBlock(config, opts.rank, opts.alpha / opts.rank, seed + 10 * i));
  }

  namedWeights(): { name: string; variable: tf.Variable }[] {
    return this.blocks.flatMap((b, i) =>
      Object.entries(b.pairs).flatMap(([proj, { a, b: bw }]) => [
        { name: `layers.${i}.lora.${proj}.a`, variable: a },
        { name: `layers.${i}.lora.${proj}.b`, variable: bw },
      ]),
    );
  }

  dispose(): void {
    for (const { variable } of this.namedWeights()) variable.dispose();
  }
}
