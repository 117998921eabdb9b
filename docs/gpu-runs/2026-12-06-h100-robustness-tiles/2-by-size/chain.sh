#!/usr/bin/env bash
# Build 40ce63f: tiling by product size and the fast-shader toggles under mixed precision (both the default). The f16
# bench at the 1.1B step's other product shapes, 1.1B mixed one process per tiling choice, then the scale stage (1.1B,
# key-token scoring, 135M). Output: /tmp/detached/c2/out.
set -uo pipefail
o=/tmp/detached/c2/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
t "f16 products of the 1.1B step: QKV, weight gradients"
ARL_DAWN_FLAGS=enable-dawn-features=disable_robustness,disable_workgroup_init F16_TILINGS=2x2/2x2/32,4x4/2x2/32,2x4/2x2/32 BATCHES=5 ITER=20 \
  SHAPES=4096x2048x2560,2560x4096x2048,2048x4096x5632,5632x4096x2048 TRANSPOSES=nn,tn node dist/bench/f16-matmul-bench.mjs 2>> "$o/f16.stderr" | grep '^{' >> "$o/f16.jsonl"
for tiling in by-size 2x2/2x2/32 2x4/2x2/32; do
  t "1.1B mixed, tiling $tiling"
  if [ "$tiling" = by-size ]; then set --; else set -- ARL_F16_TILING=$tiling; fi
  env "$@" timeout 150 node dist/cli/arl.mjs bench --backend webgpu --precision mixed --vocab 32000 --dim 2048 --layers 22 --heads 32 \
    --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 10 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift 2>> "$o/train.stderr" |
    grep '^{' | sed "s|^{|{\"tiling\":\"$tiling\",|" >> "$o/train.jsonl"
done
t "scale 1.1b"; STAGES=scale SCALE_SIZES=1.1b SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-1.1b" 2> "$o/scale.stderr"
t "scoring"; STAGES=scoring SCORING_ROUNDS=3 bash scripts/gpu-bench.sh "$o/scoring" 2> "$o/scoring.stderr"
t "scale 135m"; STAGES=scale SCALE_SIZES=135m SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-135m" 2>> "$o/scale.stderr"
t "chain done"
