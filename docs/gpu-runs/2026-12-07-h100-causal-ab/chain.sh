#!/usr/bin/env bash
# 1. fp32 training at 1.1B in turns, 3 rounds, base build 0e122ca against the current one (causal attention's
#    products skip what causality makes zero, causal softmax reads, vec4 AdamW and Transpose).
# 2. A kernel profile of one 1.1B fp32 step (current build).
# 3. Per product at 1.1B: the default tiling against grouped tiles (g), reads before the previous FMAs (p), and both.
# 4. The same comparison as 1 at 135M.
# 5. Correctness (greedy parity, webgpu vs wasm training from one checkpoint).
set -uo pipefail
o=/tmp/detached/c1/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4"
m135="--vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --tie-embeddings --seq 1024 --batch 8"
t "A/B 1.1b"; bash scripts/gpu-compare-builds.sh run "$o/ab-1.1b" 3 -- $common $m1b --steps 8
t "profile 1.1b fp32"
timeout 100 node dist/cli/arl.mjs bench $common $m1b --steps 3 --profile > "$o/profile-1.1b-fp32.jsonl" 2>> "$o/stderr"
t "products 1.1b"
MODELS=1.1b TILINGS="128x128/16uv,128x64/16uv 128x128/16uvg,128x64/16uvg 128x128/16uvp,128x64/16uvp 128x128/16uvpg,128x64/16uvpg" \
  timeout 120 node dist/bench/matmul-bench.mjs > "$o/products-1.1b.jsonl" 2> "$o/products.stderr"
t "A/B 135m"; bash scripts/gpu-compare-builds.sh run "$o/ab-135m" 3 -- $common $m135 --steps 10
t "correctness: parity, train"
STAGES="parity train" bash scripts/gpu-bench.sh "$o/correct" 2> "$o/correct.stderr"
grep -q '"match": true' "$o/correct/gpu-bench.jsonl" || t "greedy parity FAILED"
t "chain done"
