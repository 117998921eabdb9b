#!/usr/bin/env bash
# The scale stage with the default tiling (1.1B first).
set -uo pipefail
o=/tmp/detached/c12/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
cat "$o/gpu.csv"
t "scale with the default tiling"
STAGES=scale SCALE_SIZES="1.1b 135m 30m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.log"
t "chain done"
