#!/usr/bin/env bash
# 1. Each tiling's measured residency, and split K filling whole waves against the fixed rule, at four products (three
#    of 1.1B, one of 135M) of which three fill waves badly; 128-thread workgroups of 8 x 16 outputs (the loop written
#    out whole / four steps at a time).
# 2. Correctness (greedy parity, webgpu vs wasm training from one checkpoint).
# 3. fp32 training at 1.1B and 135M in turns, 3 rounds: the default with waves on / off and the faster 128-thread tiling of 1.
set -uo pipefail
o=/tmp/detached/p5/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4"
m135="--vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --tie-embeddings --seq 1024 --batch 8"
products="2048x4096x2560:tn 4096x2048x2560:nn 4096x2560x2048:nt 576x8192x960:tn"
for waves in 1 0; do
  t "products, waves $waves"
  ARL_MATMUL_WAVES=$waves PRODUCTS="$products" TILINGS="128x128/16uv,128x64/16uv 128x128/16uv@8x16,128x64/16uv 128x128/16u4v@8x16,128x64/16uv" \
    timeout 120 node dist/bench/matmul-bench.mjs > "$o/products-waves$waves.jsonl" 2>> "$o/products.stderr"
done
wide=$(python3 -c "
import json
rows = [json.loads(l) for l in open('$o/products-waves1.jsonl') if '\"total_ms\"' in l and '@8x16' in l]
print(min(rows, key=lambda r: r['total_ms'])['tiling'] if rows else '')")
t "128-thread tiling: '$wide'"
t "correctness: parity, train"
STAGES="parity train" bash scripts/gpu-bench.sh "$o/correct" 2> "$o/correct.stderr"
grep -q '"match": true' "$o/correct/gpu-bench.jsonl" || { t "greedy parity failed: stopping"; exit 1; }
run() { # tag waves tiling bench-args...
  local tag=$1 waves=$2 tiling=$3; shift 3
  t "$tag round $round waves $waves tiling '$tiling'"
  ARL_MATMUL_WAVES=$waves ARL_MATMUL_TILING=$tiling timeout 100 node dist/cli/arl.mjs bench $common "$@" 2>> "$o/stderr" | grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"$tiling\",\"waves\":$waves,\"round\":$round,|" >> "$o/steps-$tag.jsonl"
}
for round in 1 2 3; do
  run 1b 1 "" $m1b --steps 8
  run 1b 0 "" $m1b --steps 8
  [ -n "$wide" ] && run 1b 1 "$wide" $m1b --steps 8
  run 135m 1 "" $m135 --steps 10
  run 135m 0 "" $m135 --steps 10
  [ -n "$wide" ] && run 135m 1 "$wide" $m135 --steps 10
done
t "chain done"
