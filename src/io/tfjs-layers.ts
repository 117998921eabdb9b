/**
 * The decoder as a plain tfjs LayersModel (ids [batch, T] int32 -> logits [batch, T, vocab]) for
 * `arl export --format tfjs`. Each sublayer is one layer (norms, attention, MLP, residual adds),
 * so model.json reads like the architecture and each weight is named after its HF counterpart.
 * The custom classes register themselves with tfjs when this module loads; the browser bundle
 * (scripts/build.ts, dist/browser/arl-tfjs-layers.js) is this module, run against the page's `tf`.
 * Only tfjs and the model's own building blocks are imported, so it runs in a browser.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../model/config.ts';
import { causalSelfAttention } from '../ops/attention.ts';
import { swiglu } from '../ops/swiglu.ts';
import { attentionMask, ropeTables, rotateHalfMatrix, RMSNorm, TokenEmbedding } from '../model/llama.ts';

type Kwargs = tf.serialization.ConfigDict;

/** [B, T, D] -> [B*T, D], f, -> [B, T, D'] */
function rowwise(x: tf.Tensor, f: (rows: tf.Tensor2D) => tf.Tensor2D): tf.Tensor3D {
  const [batch, seq, dim] = x.shape;
  const y = f(tf.reshape(x, [batch * seq, dim]) as tf.Tensor2D);
  return tf.reshape(y, [batch, seq, y.shape[1]]) as tf.Tensor3D;
}

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

export class ArlEmbedding extends TokenEmbedding {
  static override className = 'ArlEmbedding';
  static override fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, c: Kwargs): T {
    return new (cls as unknown as typeof ArlEmbedding)(c.vocabSize as number, c.dim as number, c.seed as number, c.name as string) as unknown as T;
  }
}

export class ArlRMSNorm extends RMSNorm {
  static override className = 'ArlRMSNorm';
  static override fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, c: Kwargs): T {
    return new (cls as unknown as typeof ArlRMSNorm)(c.dim as number, c.eps as number, c.name as string) as unknown as T;
  }
}

/** A layer whose whole configuration is the model config (plus its name). */
abstract class ConfiguredLayer extends tf.layers.Layer {
  constructor(protected readonly modelConfig: ModelConfig, name: string) {
    super({ name });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), modelConfig: this.modelConfig as unknown as tf.serialization.ConfigDictValue };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, c: Kwargs): T {
    return new (cls as unknown as new (m: ModelConfig, n: string) => T)(c.modelConfig as unknown as ModelConfig, c.name as string);
  }
}

/** Causal grouped-query self-attention with rotary positions: q/k/v/o projections, the normed input in. */
export class ArlSelfAttention extends ConfiguredLayer {
  static className = 'ArlSelfAttention';
  q!: tf.LayerVariable;
  k!: tf.LayerVariable;
  v!: tf.LayerVariable;
  o!: tf.LayerVariable;

  override build(): void {
    const { dim, heads, kvHeads, headDim } = this.modelConfig;
    const zeros = tf.initializers.zeros();
    this.q = this.addWeight('q_proj', [dim, heads * headDim], 'float32', zeros);
    this.k = this.addWeight('k_proj', [dim, kvHeads * headDim], 'float32', zeros);
    this.v = this.addWeight('v_proj', [dim, kvHeads * headDim], 'float32', zeros);
    this.o = this.addWeight('o_proj', [heads * headDim, dim], 'float32', zeros);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const c = this.modelConfig;
      const x = single(inputs);
      const [batch, seq] = x.shape as number[];
      const { cos, sin } = ropeTables(c);
      return rowwise(x, (h) => {
        const qkv = tf.matMul(h, tf.concat([this.q.read(), this.k.read(), this.v.read()], 1)) as tf.Tensor2D;
        const context = causalSelfAttention(qkv, {
          batch,
          seq,
          heads: c.heads,
          kvHeads: c.kvHeads,
          headDim: c.headDim,
          cos: tf.slice(cos, [0, 0], [seq, c.headDim]),
          sin: tf.slice(sin, [0, 0], [seq, c.headDim]),
          rotate: rotateHalfMatrix(c.headDim),
          mask: attentionMask(seq, 0, c.heads / c.kvHeads, c.attentionWindow),
        });
        return tf.matMul(context, this.o.read());
      });
    });
  }
}

/** The SwiGLU MLP: down(silu(gate(x)) * up(x)). */
export class ArlMlp extends ConfiguredLayer {
  static className = 'ArlMlp';
  gate!: tf.LayerVariable;
  up!: tf.LayerVariable;
  down!: tf.LayerVariable;

  override build(): void {
    const { dim, hiddenDim } = this.modelConfig;
    const zeros = tf.initializers.zeros();
    this.gate = this.addWeight('gate_proj', [dim, hiddenDim], 'float32', zeros);
    this.up = this.addWeight('up_proj', [dim, hiddenDim], 'float32', zeros);
    this.down = this.addWeight('down_proj', [hiddenDim, dim], 'float32', zeros);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => rowwise(single(inputs), (h) => tf.matMul(swiglu(tf.matMul(h, this.gate.read()), tf.matMul(h, this.up.read())), this.down.read())));
  }
}

/** Hidden states to vocabulary logits (a tied embedding is exported as its transpose here). */
export class ArlLMHead extends ConfiguredLayer {
  static className = 'ArlLMHead';
  weight!: tf.LayerVariable;

  override build(): void {
    this.weight = this.addWeight('weight', [this.modelConfig.dim, this.modelConfig.vocabSize], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => rowwise(single(inputs), (h) => tf.matMul(h, this.weight.read())));
  }

  override computeOutputShape(inputShape: tf.Shape): tf.Shape {
    return [...inputShape.slice(0, -1), this.modelConfig.vocabSize];
  }
}

for (const cls of [ArlEmbedding, ArlRMSNorm, ArlSelfAttention, ArlMlp, ArlLMHead]) tf.serialization.registerClass(cls);

/** The LayersModel of `config` (zero weights): embed_tokens, per block norm/attention/add/norm/MLP/add, norm, lm_head. */
export function buildTfjsModel(config: ModelConfig): tf.LayersModel {
  const ids = tf.input({ shape: [null], dtype: 'int32', name: 'input_ids' });
  let x = new ArlEmbedding(config.vocabSize, config.dim, 0, 'embed_tokens').apply(ids) as tf.SymbolicTensor;
  for (let i = 0; i < config.layers; i++) {
    const p = `layers.${i}`;
    const attention = new ArlSelfAttention(config, `${p}.self_attn`).apply(new ArlRMSNorm(config.dim, config.normEps, `${p}.input_layernorm`).apply(x)) as tf.SymbolicTensor;
    x = tf.layers.add({ name: `${p}.attn_residual` }).apply([x, attention]) as tf.SymbolicTensor;
    const mlp = new ArlMlp(config, `${p}.mlp`).apply(new ArlRMSNorm(config.dim, config.normEps, `${p}.post_attention_layernorm`).apply(x)) as tf.SymbolicTensor;
    x = tf.layers.add({ name: `${p}.mlp_residual` }).apply([x, mlp]) as tf.SymbolicTensor;
  }
  const logits = new ArlLMHead(config, 'lm_head').apply(new ArlRMSNorm(config.dim, config.normEps, 'norm').apply(x)) as tf.SymbolicTensor;
  return tf.model({ inputs: ids, outputs: logits, name: 'arl_llama' });
}
