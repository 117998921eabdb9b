/**
 * LIFT's Gated Memory adapter (methods.md section 3). In every layer and every query head, on the
 * head's query q before RoPE:
 *   memory m(q) = W2 SiLU(W1 q)                    head_dim -> 2 head_dim -> head_dim
 *   gate   g(q) = sigmoid(3 (W4 SiLU(W3 q) - 1))   head_dim -> floor(sqrt(head_dim)) -> 1, no bias
 *   output       (1 - g) * attention + g * m(q), per head, before o_proj.
 * Weights are per query head, not shared: the official code (GraphPKU/LIFT, GMLlamaAttention) builds
 * them as GroupedLinear(num_heads, ...), one [in, out] matrix per head. With grouped-query attention
 * every query head still has its own query, so the adapter works unchanged.
 * Init: W1, W3 uniform(+-1/sqrt(in)) as the official code's kaiming init; W2 and W4 zero, so m = 0
 * and g = sigmoid(-3) ~ 0.047 exactly at the start (methods.md: m ~ 0, g ~ 0.05).
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../model/config.ts';
import type { BlockAdapter } from '../model/llama.ts';
import { adapterVariable, type ModelAdapter, silu } from './adapter.ts';

/** Width of the gate's hidden layer. */
export function gateWidth(headDim: number): number {
  return Math.floor(Math.sqrt(headDim));
}

class GatedMemoryBlock implements BlockAdapter {
  readonly w1: tf.Variable; // [H, hd, 2 hd]
  readonly w2: tf.Variable; // [H, 2 hd, hd]
  readonly w3: tf.Variable; // [H, hd, r]
  readonly w4: tf.Variable; // [H, r, 1]

  constructor(private readonly heads: number, private readonly headDim: number, seed: number) {
    const r = gateWidth(headDim);
    const uniform = (fanIn: number, s: number) => tf.initializers.randomUniform({ minval: -1 / Math.sqrt(fanIn), maxval: 1 / Math.sqrt(fanIn), seed: s });
    this.w1 = adapterVariable('gm_w1', [heads, headDim, 2 * headDim], uniform(headDim, seed + 1));
    this.w2 = adapterVariable('gm_w2', [heads, 2 * headDim, headDim], tf.initializers.zeros());
    this.w3 = adapterVariable('gm_w3', [heads, headDim, r], uniform(headDim, seed + 2));
    this.w4 = adapterVariable('gm_w4', [heads, r, 1], tf.initializers.zeros());
  }

  /** [N, H*hd] -> [H, N, hd] */
  private byHead(flat: tf.Tensor2D): tf.Tensor3D {
    return tf.transpose(tf.reshape(flat, [flat.shape[0], this.heads, this.headDim]), [1, 0, 2]);
  }

  /** Gate per head and row, [H, N, 1], from the pre-RoPE queries [N, H*hd]. */
  gate(queries: tf.Tensor2D): tf.Tensor3D {
    return tf.sigmoid(tf.mul(tf.sub(tf.matMul(silu(tf.matMul(this.byHead(queries), this.w3)) as tf.Tensor3D, this.w4), 1), 3)) as tf.Tensor3D;
  }

  attentionOutput(attention: tf.Tensor2D, queries: tf.Tensor2D): tf.Tensor2D {
    const q = this.byHead(queries);
    const memory = tf.matMul(silu(tf.matMul(q, this.w1)) as tf.Tensor3D, this.w2);
    const g = this.gate(queries);
    const mixed = tf.add(tf.mul(tf.sub(1, g), this.byHead(attention)), tf.mul(g, memory));
    return tf.reshape(tf.transpose(mixed, [1, 0, 2]), attention.shape);
  }
}

export class GatedMemoryAdapter implements ModelAdapter {
  readonly kind = 'gated-memory' as const;
  readonly settings: Record<string, number> = {};
  readonly blocks: GatedMemoryBlock[];

  constructor(config: ModelConfig, seed = 0) {
    this.blocks = Array.from({ length: config.layers }, (_, i) => new GatedMemoryBlock(config.heads, config.headDim, seed + 10 * i));
  }

  namedWeights(): { name: string; variable: tf.Variable }[] {
    return this.blocks.flatMap((b, i) =>
      (['w1', 'w2', 'w3', 'w4'] as const).map((w) => ({ name: `layers.${i}.gated_memory.${w}`, variable: b[w] })),
    );
  }

  dispose(): void {
    for (const { variable } of this.namedWeights()) variable.dispose();
  }
}
