#!/usr/bin/env bash
# On an H200: the scale stage with the default tiling (1.1B first), then 1.1B in turns, the default against swizzled staging (s).
# On another card: the 1.1B products with and without s, then 1.1B training in turns.
set -uo pipefail
o=/tmp/detached/c12/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
cat "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
turns() {
  local rounds=$1; shift
  for r in $(seq "$rounds"); do for v in "$@"; do
    t "1.1b round $r $v"
    env $v timeout 60 node dist/cli/arl.mjs bench $common $m1b 2>> "$o/stderr" | grep '"bench":"train"' | sed "s|^{|{\"variant\":\"$v\",\"round\":$r,|" >> "$o/steps-1b.jsonl"
  done; done
}
D=128x128/16uvia,128x64/16uvia
S=128x128/16uvias,128x64/16uvias
if grep -q H200 "$o/gpu.csv"; then
  t "scale with the default tiling"
  GPU_NAME=H200 STAGES=scale SCALE_SIZES="1.1b 135m 30m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.log"
  turns 2 ARL_MATMUL_TILING=$D ARL_MATMUL_TILING=$S
else
  t "products"
  MODELS=1.1b TILINGS="$D $S" timeout 120 node dist/bench/matmul-bench.mjs > "$o/products.jsonl" 2>> "$o/products.stderr"
  turns 3 ARL_MATMUL_TILING=$D ARL_MATMUL_TILING=$S
fi
t "chain done"
