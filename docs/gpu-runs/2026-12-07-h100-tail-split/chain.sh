#!/usr/bin/env bash
# The 1.1B products with K's tail split (default) and the whole split; 1.1B training with each, in turns; attention's
# hinted products over tilings of the 64-wide slot; the fastest of those in training; 135M with each.
set -uo pipefail
o=/tmp/detached/c3/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
m135="--vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --tie-embeddings --seq 1024 --batch 8 --steps 10"
train() { # tag round variant model-args
  t "$1 round $2 $3"
  env $3 timeout 60 node dist/cli/arl.mjs bench $common $4 2>> "$o/stderr" | grep '"bench":"train"' | sed "s|^{|{\"variant\":\"$3\",\"round\":$2,|" >> "$o/steps-$1.jsonl"
}
t "weight products: tail split (default), whole split"
for v in ARL_MATMUL_SPLIT_TAIL=1 ARL_MATMUL_SPLIT_TAIL=0; do
  env $v MODELS=1.1b TILINGS="128x128/16uv,128x64/16uv" timeout 90 node dist/bench/matmul-bench.mjs 2>> "$o/products.stderr" | sed "s|^{|{\"variant\":\"$v\",|" >> "$o/weights.jsonl"
done
for v in ARL_MATMUL_SPLIT_TAIL=1 ARL_MATMUL_SPLIT_TAIL=0; do train 1b 1 $v "$m1b"; done
t "attention products"
P1="16x8192x64x1024:nt:scores@1024 16x8192x1024x64:nn:queries@1024 16x1024x8192x64:tn:keys@1024"
P2="24x3072x64x1024:nt:scores@1024 24x3072x1024x64:nn:queries@1024 24x1024x3072x64:tn:keys@1024"
TL=""
for slot in 128x64/16uv 128x64/32uv 128x64/64uv 64x64/32uv 64x64/64uv 128x64/16uvpg 128x64/32uvp 64x64/64uvp 128x64/32uvd; do TL="$TL 128x128/16uv,$slot"; done
PRODUCTS="$P1 $P2" TILINGS="$TL" timeout 120 node dist/bench/matmul-bench.mjs > "$o/products.jsonl" 2>> "$o/products.stderr"
best=$(python3 - "$o/products.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
big = {'16x8192x64x1024:nt:scores@1024', '16x8192x1024x64:nn:queries@1024', '16x1024x8192x64:tn:keys@1024'}
tot, n = {}, {}
for r in rows:
    if r.get('product') in big and 'ms' in r and r['tiling'] != 'tfjs' and r.get('max_rel_error', 0) < 1e-4:
        tot[r['tiling']] = tot.get(r['tiling'], 0) + r['ms']
        n[r['tiling']] = n.get(r['tiling'], 0) + 1
tot = {k: v for k, v in tot.items() if n[k] == 3}
best = min(tot, key=tot.get) if tot else ''
print(best if best != '128x128/16uv,128x64/16uv' else '')
PY
)
t "fastest attention tiling: '$best'"
[ -n "$best" ] && train 1b 1 "ARL_MATMUL_TILING=$best" "$m1b"
for v in ARL_MATMUL_SPLIT_TAIL=1 ARL_MATMUL_SPLIT_TAIL=0 ${best:+"ARL_MATMUL_TILING=$best"}; do train 1b 2 $v "$m1b"; done
for v in ARL_MATMUL_SPLIT_TAIL=1 ARL_MATMUL_SPLIT_TAIL=0 ${best:+"ARL_MATMUL_TILING=$best"}; do train 135m 1 $v "$m135"; done
t "1.1b profile"
timeout 60 node dist/cli/arl.mjs bench $common ${m1b/--steps 8/--steps 2} --profile 2>> "$o/stderr" | grep '"bench":"profile"' > "$o/profile-1b.jsonl"
t "chain done"
