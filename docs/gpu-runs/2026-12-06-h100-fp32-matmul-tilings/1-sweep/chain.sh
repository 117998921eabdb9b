#!/usr/bin/env bash
# f32 matmul tilings: the per-product sweep (dist/bench/matmul-bench.mjs), then training steps at 29M and 1.1B (fp32)
# with the default tiling against the tilings the sweep found fastest for each model's products, in turns.
set -uo pipefail
o=/tmp/detached/mm/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
t "sweep"
timeout 300 node dist/bench/matmul-bench.mjs > "$o/sweep.jsonl" 2> "$o/sweep.stderr"
t "sweep done"
best=$(python3 - "$o/sweep.jsonl" 2> "$o/sweep-totals.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
groups = {'29m': lambda p: p.startswith(('8192x512', '8192x1536', '516x', '512x', '8192x1368', '1368x', '8192x8192', '128x')),
          '1b': lambda p: p.startswith(('4096x', '2048x', '5632x'))}
tfjs = {r['product']: r['ms'] for r in rows if r.get('tiling') == 'tfjs'}
out = []
for g, member in groups.items():
    totals = {}
    for r in rows:
        if 'product' not in r or r['tiling'] == 'tfjs' or not member(r['product']): continue
        totals.setdefault(r['tiling'], 0.0)
        totals[r['tiling']] += r['ms'] if 'ms' in r else tfjs[r['product']]
    ranked = sorted(totals.items(), key=lambda kv: kv[1])
    print(json.dumps({'bench': 'matmul-sweep-total', 'group': g, 'ranked': ranked}), file=sys.stderr)
    out.append(ranked[0][0])
print(' '.join(out))
PY
)
echo "$best" > "$o/best.txt"
read best29 best1b <<< "$best"
t "best 29M: $best29, best 1.1B: $best1b"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m29="--vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16 --steps 20"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
for round in 1 2 3; do
  for tiling in "" "$best29" "128x128/16uv,128x64/16uv" "128x256/16uv,128x128/16uv,128x64/16uv"; do
    t "29M round $round tiling '$tiling'"
    ARL_MATMUL_TILING=$tiling timeout 100 node dist/cli/arl.mjs bench $common $m29 2>> "$o/steps.stderr" | grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"$tiling\",\"round\":$round,|" >> "$o/steps-29m.jsonl"
  done
done
for round in 1 2; do
  for tiling in "" "$best1b" "128x256/16uv,128x128/16uv"; do
    t "1.1B round $round tiling '$tiling'"
    ARL_MATMUL_TILING=$tiling timeout 120 node dist/cli/arl.mjs bench $common $m1b 2>> "$o/steps.stderr" | grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"$tiling\",\"round\":$round,|" >> "$o/steps-1b.jsonl"
  done
done
t "chain done"
