#!/usr/bin/env bash
# f32 matmul, third run: a product takes the first tiling that fills the GPU without splitting K (64 x 64 tiles for
# attention's 64-wide weight-gradient-like products at 1.1B and 135M), else the first that fits. The new default against
# the one before (128x128/16uv,128x64/16uv), in turns, fp32 training at 1.1B and 135M. Output: /tmp/detached/m3/out.
set -uo pipefail
o=/tmp/detached/m3/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
m135="--vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --tie-embeddings --seq 1024 --batch 8 --steps 10"
for round in 1 2 3; do
  for tiling in "" "128x128/16uv,128x64/16uv"; do
    t "1.1B round $round tiling '$tiling'"
    ARL_MATMUL_TILING=$tiling timeout 120 node dist/cli/arl.mjs bench $common $m1b 2>> "$o/steps.stderr" | grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"$tiling\",\"round\":$round,|" >> "$o/steps-1b.jsonl"
    t "135M round $round tiling '$tiling'"
    ARL_MATMUL_TILING=$tiling timeout 100 node dist/cli/arl.mjs bench $common $m135 2>> "$o/steps.stderr" | grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"$tiling\",\"round\":$round,|" >> "$o/steps-135m.jsonl"
  done
done
t "chain done"
