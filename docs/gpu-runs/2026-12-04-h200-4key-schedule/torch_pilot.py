# 4-key pilot: HF Llama (our 29.4M shape) on the base's exported task rows (ROWS folder), copy rows and text rows,
# as our trainer mixes them (task, copy, text rows; answer weight AW against text weight 1, one mean over the batch).
# Greedy exact match on the development set (dev documents, test-pool keys) at 1x; never the experiment's test set.
# Env: ROWS, NT, NC, AW, LR, STEPS, MID (eval every MID steps, 4-key only, n=100), DEADLINE (s; stop training then),
# SCHED (cos: cosine to LR/10 after 100 warm-up steps; wsd: constant LR, then linear to LR/10 over the last DECAY share),
# ROWS_AFTER and SWITCH (a curriculum: from step SWITCH on, task rows come from the ROWS_AFTER folder instead).
import os, json, math, time, numpy as np, torch, torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
d = os.environ['ROWS']; c = json.load(open(f'{d}/cfg.json'))
T = 512; B = 16; NT, NC = int(os.environ.get('NT', 8)), int(os.environ.get('NC', 4)); AW = float(os.environ.get('AW', 5))
steps = int(os.environ.get('STEPS', c['rows'] // NT)); deadline = float(os.environ.get('DEADLINE', 1e9)); mid = int(os.environ.get('MID', 0))
torch.manual_seed(1)
def load_rows(folder):
    tokens = np.fromfile(f'{folder}/task_tokens.i16', dtype=np.int16).astype(np.int64).reshape(-1, T + 1)
    return tokens, np.unpackbits(np.fromfile(f'{folder}/task_mask.bits', dtype=np.uint8)).astype(np.float32).reshape(-1, T)
task, mask = load_rows(d)
switch = int(os.environ.get('SWITCH', 0))
if switch: task_after, mask_after = load_rows(os.environ['ROWS_AFTER'])
text = np.fromfile(os.environ.get('TEXT', f'{d}/text_tokens.i16'), dtype=np.int16).astype(np.int64)
assert len(task) >= steps * NT, 'not enough task rows'
cfg = LlamaConfig(vocab_size=c['vocabSize'], hidden_size=c['dim'], num_hidden_layers=c['layers'], num_attention_heads=c['heads'],
                  num_key_value_heads=c['kvHeads'], intermediate_size=c['hiddenDim'], max_position_embeddings=T,
                  tie_word_embeddings=c['tieEmbeddings'], rope_theta=c['ropeTheta'], rms_norm_eps=c['normEps'],
                  bos_token_id=c['bos'], eos_token_id=c['eos'])
cfg._attn_implementation = 'sdpa'
m = LlamaForCausalLM(cfg).cuda().train()
lr0 = float(os.environ.get('LR', 1.5e-3)); lrmin = lr0 / 10; warm = 100
opt = torch.optim.AdamW(m.parameters(), lr=lr0, betas=(0.9, 0.95), weight_decay=0.1)
rng = np.random.default_rng(0)
dev = [json.loads(l) for l in open(f'{d}/dev.jsonl')]
sched = os.environ.get('SCHED', 'cos'); decay = float(os.environ.get('DECAY', 0.2))
def lr_at(s):
    if s < warm: return lr0 * (s + 1) / warm
    if sched == 'wsd':
        d0 = steps * (1 - decay); return lr0 if s < d0 else lr0 - (lr0 - lrmin) * (s - d0) / max(1, steps - d0)
    p = (s - warm) / max(1, steps - warm); return lrmin + 0.5 * (lr0 - lrmin) * (1 + math.cos(math.pi * p))
@torch.no_grad()
def evaluate(tasks, n):
    m.eval(); res = {}
    for name in tasks:
        ok = 0; items = [t for t in dev if t['task'] == name][:n]
        for t in items:
            ids = torch.tensor([t['ids']], device='cuda')
            with torch.autocast('cuda', dtype=torch.bfloat16):
                g = m.generate(ids, max_new_tokens=len(t['goldIds']), do_sample=False, pad_token_id=c['eos'])
            ok += g[0, ids.shape[1]:].tolist()[:len(t['goldIds']) - 1] == t['goldIds'][:-1]
        res[name] = f'{ok}/{len(items)}'
    m.train(); return res
t0 = time.time(); s = 0
for s in range(steps):
    rows_from, masks_from = (task_after, mask_after) if switch and s >= switch else (task, mask)
    rows = rows_from[s * NT:(s + 1) * NT]; w = masks_from[s * NT:(s + 1) * NT] * AW
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
    with torch.autocast('cuda', dtype=torch.bfloat16):
        logits = m(input_ids=x).logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction='none').reshape(B, T)
    loss = (ce * W).sum() / W.sum()
    opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if s % 250 == 0 or s == steps - 1:
        with torch.no_grad():
            ans = (ce[:NT] * (W[:NT] > 0)).sum() / (W[:NT] > 0).sum()
            print(f'step {s} loss {loss.item():.3f} answer_ce {ans.item():.3f} text_ce {ce[NT + NC:].mean().item():.3f} {time.time() - t0:.0f}s', flush=True)
    if mid and (s + 1) % mid == 0 and s + 1 < steps: print('eval', s + 1, evaluate(['niah_multikey'], 100), f'{time.time() - t0:.0f}s', flush=True)
    if time.time() - t0 > deadline: print('deadline reached at step', s + 1, flush=True); break
print('final eval 1x dev at step', s + 1, evaluate(['niah_single', 'niah_multikey'], 200), f'{time.time() - t0:.0f}s', flush=True)
