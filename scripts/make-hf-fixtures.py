"""Makes the extra Hugging Face parity fixtures under test/fixtures/hf/ (run where transformers is installed).

Each fixture is a random LlamaForCausalLM saved by transformers, with reference.json holding its
logits for two sequences and a greedy continuation, exactly like test/fixtures/tiny-llama.
Variants cover the parts of the architecture the tiny-llama fixture does not: MHA, multi-query,
wide GQA, explicit head_dim, another rope theta, llama3 rope scaling, tied embeddings, an
old-style config.json (rope_theta at top level, no head_dim), and sharded safetensors.
Usage: python3 scripts/make-hf-fixtures.py OUT_DIR
"""
import json, os, sys, traceback
import torch
from transformers import LlamaConfig, LlamaForCausalLM

OUT = sys.argv[1]
BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, intermediate_size=96,
            max_position_embeddings=96, rms_norm_eps=1e-5, initializer_range=0.08,
            bos_token_id=1, eos_token_id=2)
VARIANTS = {
    "mha-tied": dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True),
    "gqa4-theta500k": dict(num_attention_heads=8, num_key_value_heads=2,
                           rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "mqa-oldstyle": dict(num_attention_heads=4, num_key_value_heads=1, hidden_size=48, intermediate_size=80,
                         rope_parameters={"rope_type": "default", "rope_theta": 20000.0}),
    "headdim24": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=24),
    "llama3-rope": dict(num_attention_heads=4, num_key_value_heads=2,
                        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 16}),
    "sharded-3layers": dict(num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3),
}

def make(name, overrides, seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**BASE, **overrides})
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms are ones at init; randomise them so their mapping is tested too
        for n, p in model.named_parameters():
            if "norm" in n:
                p.mul_(1 + 0.2 * torch.randn_like(p))
    d = os.path.join(OUT, name)
    model.save_pretrained(d, safe_serialization=True, max_shard_size="60KB" if name.startswith("sharded") else "50GB")
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(3, cfg.vocab_size, (2, 20), generator=g)
    with torch.no_grad():
        logits = model(ids).logits
        prompt = ids[:1, :8]
        out = model.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    ref = {"input_ids": ids.tolist(),
           "logits": [[[round(float(x), 6) for x in row] for row in seq] for seq in logits],
           "greedy": {"prompt": prompt[0].tolist(), "output": out[0].tolist()}}
    json.dump(ref, open(os.path.join(d, "reference.json"), "w"))
    if name == "mqa-oldstyle":  # rewrite as an old transformers 4.x config
        c = json.load(open(os.path.join(d, "config.json")))
        theta = c.pop("rope_parameters")["rope_theta"]
        c.pop("head_dim", None)
        c["rope_theta"] = theta
        c["rope_scaling"] = None
        c["eos_token_id"] = [2]
        c["torch_dtype"] = c.pop("dtype", "float32")
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
    print(name, "ok", sorted(os.listdir(d)), flush=True)

for i, (name, ov) in enumerate(VARIANTS.items()):
    try:
        make(name, ov, 100 + i)
    except Exception:
        traceback.print_exc()
