# A Llama checkpoint as Hugging Face writes it (fp32 model.safetensors + config.json), random weights, numpy only.
# Default shape: TinyLlama-1.1B. Env: OUT (folder), V D L H KV F, MAXPOS (window), SEED.
#   OUT=/tmp/tl python3 scripts/make-hf-llama.py            (4.4 GB)
#   OUT=/tmp/tl4k V=4096 python3 scripts/make-hf-llama.py   (the 1.1B shape with our bundled tokenizer's vocabulary)
import json, os, struct, numpy as np
e = lambda k, d: int(os.environ.get(k, d))
V, D, L, H, KV, F, MAXPOS = e('V', 32000), e('D', 2048), e('L', 22), e('H', 32), e('KV', 4), e('F', 5632), e('MAXPOS', 2048)
out = os.environ.get('OUT', '/tmp/tl')
os.makedirs(out, exist_ok=True)
hd = D // H
shapes = {'model.embed_tokens.weight': (V, D)}
for i in range(L):
    p = f'model.layers.{i}.'
    shapes.update({p + 'self_attn.q_proj.weight': (D, D), p + 'self_attn.k_proj.weight': (KV * hd, D), p + 'self_attn.v_proj.weight': (KV * hd, D),
                   p + 'self_attn.o_proj.weight': (D, D), p + 'mlp.gate_proj.weight': (F, D), p + 'mlp.up_proj.weight': (F, D), p + 'mlp.down_proj.weight': (D, F),
                   p + 'input_layernorm.weight': (D,), p + 'post_attention_layernorm.weight': (D,)})
shapes['model.norm.weight'] = (D,)
shapes['lm_head.weight'] = (V, D)
header, off = {}, 0
for k, s in shapes.items():
    n = int(np.prod(s)) * 4
    header[k] = {'dtype': 'F32', 'shape': list(s), 'data_offsets': [off, off + n]}
    off += n
header['__metadata__'] = {'format': 'pt'}
h = json.dumps(header).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
rng = np.random.default_rng(e('SEED', 0))
with open(f'{out}/model.safetensors', 'wb') as f:
    f.write(struct.pack('<Q', len(h)))
    f.write(h)
    for k, s in shapes.items():
        f.write(((rng.standard_normal(s, dtype=np.float32) * 0.02) if len(s) == 2 else np.ones(s, np.float32)).tobytes())
json.dump({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'vocab_size': V, 'hidden_size': D, 'num_hidden_layers': L,
           'num_attention_heads': H, 'num_key_value_heads': KV, 'intermediate_size': F, 'max_position_embeddings': MAXPOS, 'rms_norm_eps': 1e-5,
           'rope_theta': 10000.0, 'tie_word_embeddings': False, 'bos_token_id': 1, 'eos_token_id': 2, 'hidden_act': 'silu', 'torch_dtype': 'float32'},
          open(f'{out}/config.json', 'w'))
print(json.dumps({'made': out, 'bytes': off, 'params': off // 4}))
