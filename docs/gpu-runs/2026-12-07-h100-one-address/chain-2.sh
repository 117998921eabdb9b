#!/usr/bin/env bash
# On an H200: the scale stage with the default tiling (1.1B first), then 1.1B in turns against the previous default.
# On another card: 1.1B training in turns, the default against variants of it (K tiles of 32, two staged, 8 x 4 threads a subgroup).
set -uo pipefail
o=/tmp/detached/c10/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
cat "$o/gpu.csv"
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
turns() {
  for r in 1 2; do for v in "$@"; do
    t "1.1b round $r $v"
    env $v timeout 60 node dist/cli/arl.mjs bench $common $m1b 2>> "$o/stderr" | grep '"bench":"train"' | sed "s|^{|{\"variant\":\"$v\",\"round\":$r,|" >> "$o/steps-1b.jsonl"
  done; done
}
D=ARL_MATMUL_TILING=128x128/16uvia,128x64/16uvia
if grep -q H200 "$o/gpu.csv"; then
  t "scale with the default tiling"
  STAGES=scale SCALE_SIZES="1.1b 135m 30m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.log"
  turns $D ARL_MATMUL_TILING=128x128/16uvi,128x64/16uvi
else
  turns $D ARL_MATMUL_TILING=128x128/32uvia,128x64/16uvia ARL_MATMUL_TILING=128x128/16uvdia,128x64/16uvdia ARL_MATMUL_TILING=128x128/16uvwia,128x64/16uvwia
fi
t "chain done"
