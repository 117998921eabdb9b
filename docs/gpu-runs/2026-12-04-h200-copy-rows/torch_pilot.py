# Cross-check: train HF Llama on the exact rows our trainer would see; greedy exact match on 1x test prompts.
import os, json, math, time, numpy as np, torch, torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
d = os.path.dirname(__file__)
c = json.load(open(f'{d}/cfg.json'))
T = 512; B = 16; TP = c['taskPerBatch']; steps = int(os.environ.get('STEPS', c['steps']))
mode = os.environ.get('MODE', 'bf16')
NT, NC = int(os.environ.get('NT', TP)), int(os.environ.get('NC', 0)); NORM = os.environ.get('NORM', 'row'); AW = float(os.environ.get('AW', 5))
torch.manual_seed(int(os.environ.get('SEED', 1)))
task = np.fromfile(f'{d}/task_tokens.i16', dtype=np.int16).astype(np.int64).reshape(-1, T + 1)
mask = np.fromfile(f'{d}/task_mask.u8', dtype=np.uint8).astype(np.float32).reshape(-1, T)
text = np.fromfile(f'{d}/text_tokens.i16', dtype=np.int16).astype(np.int64)
cfg = LlamaConfig(vocab_size=c['vocabSize'], hidden_size=c['dim'], num_hidden_layers=c['layers'], num_attention_heads=c['heads'],
                  num_key_value_heads=c['kvHeads'], intermediate_size=c['hiddenDim'], max_position_embeddings=T,
                  tie_word_embeddings=c['tieEmbeddings'], rope_theta=c['ropeTheta'], rms_norm_eps=c['normEps'],
                  bos_token_id=c['bos'], eos_token_id=c['eos'])
cfg._attn_implementation = 'sdpa'
m = LlamaForCausalLM(cfg).cuda().train()
print('params', sum(p.numel() for p in m.parameters()), 'tie', c['tieEmbeddings'], flush=True)
lr0, lrmin, warm = float(os.environ.get('LR', 1.5e-3)), float(os.environ.get('LR', 1.5e-3)) / 10, 100
opt = torch.optim.AdamW(m.parameters(), lr=lr0, betas=(0.9, 0.95), weight_decay=0.1)
rng = np.random.default_rng(0)
tests = [json.loads(l) for l in open(f'{d}/test.jsonl')]
def lr_at(s):
    if s < warm: return lr0 * (s + 1) / warm
    p = (s - warm) / max(1, steps - warm); return lrmin + 0.5 * (lr0 - lrmin) * (1 + math.cos(math.pi * p))
@torch.no_grad()
def evaluate(n):
    m.eval(); res = {}
    for taskname in os.environ.get('EVAL_TASKS', 'niah_single,niah_multikey').split(','):
        ok = 0; items = [t for t in tests if t['task'] == taskname][:n]
        for t in items:
            ids = torch.tensor([t['ids']], device='cuda'); out = []
            with torch.autocast('cuda', dtype=torch.bfloat16, enabled=mode == 'bf16'):
                g = m.generate(ids, max_new_tokens=len(t['goldIds']), do_sample=False, pad_token_id=c['eos'])
            pred = g[0, ids.shape[1]:].tolist()
            ok += pred[:len(t['goldIds']) - 1] == t['goldIds'][:-1]
        res[taskname] = f'{ok}/{len(items)}'
    m.train(); return res
t0 = time.time(); ans_hist = []
for s in range(steps):
    rows = task[s * NT:(s + 1) * NT]; w = mask[s * NT:(s + 1) * NT].copy()
    if NORM == 'row': w *= T / np.maximum(w.sum(1, keepdims=True), 1)
    else: w *= AW
    half = T // 2
    cs = rng.integers(0, len(text) - half - 1, NC)
    crows = np.stack([np.concatenate([[c['bos']], text[i:i + half], text[i:i + half]]) for i in cs]) if NC else np.zeros((0, T + 1), np.int64)
    cw = np.zeros((NC, T), np.float32); cw[:, half + 1:] = 1
    starts = rng.integers(0, len(text) - T - 1, B - NT - NC)
    trows = np.stack([text[i:i + T + 1] for i in starts])
    allrows = torch.from_numpy(np.concatenate([rows, crows, trows])).cuda()
    W = torch.from_numpy(np.concatenate([w, cw, np.ones((B - NT - NC, T), np.float32)])).cuda()
    x, y = allrows[:, :-1], allrows[:, 1:]
    for g in opt.param_groups: g['lr'] = lr_at(s)
    with torch.autocast('cuda', dtype=torch.bfloat16, enabled=mode == 'bf16'):
        logits = m(input_ids=x).logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction='none').reshape(B, T)
    loss = (ce * W).sum() / W.sum()
    ans = (ce[:NT] * (W[:NT] > 0)).sum() / (W[:NT] > 0).sum(); cop = (ce[NT:NT+NC] * (W[NT:NT+NC] > 0)).sum() / max(1, (W[NT:NT+NC] > 0).sum().item())
    opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if s % 100 == 0 or s == steps - 1: print(f'step {s} loss {loss.item():.3f} answer_ce {ans.item():.3f} copy_ce {float(cop):.3f} text_ce {ce[NT+NC:].mean().item():.3f} {time.time()-t0:.0f}s', flush=True)
    if os.environ.get("MID") and (s + 1) % 400 == 0 and s + 1 < steps: print('eval', s + 1, evaluate(100), flush=True)
print('final eval 1x', evaluate(int(os.environ.get('NFINAL', 300))), f'{time.time()-t0:.0f}s', flush=True)
