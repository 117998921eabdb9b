#!/usr/bin/env bash
# Dawn's fast-shader toggles (no index clamping, no workgroup zeroing) for fp32 too: the current build (dist/cli)
# against b3f4739 (.gpu/build-b3f4739.mjs.xz, toggles under mixed precision only). First the correctness stages
# (greedy parity with a transformers fixture; 30 steps webgpu vs wasm), and the chain stops if parity fails; then the scale
# stage at 29M, fp32 training of both builds in turns at 29M, a profiled 29M fp32 step, the scale stage at 1.1B and 135M, the 300-step loss curves. Output: /tmp/detached/c2/out.
set -uo pipefail
o=/tmp/detached/c2/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
t "correctness: parity, train"
STAGES="parity train" bash scripts/gpu-bench.sh "$o/correct" 2> "$o/correct.stderr"
grep -q '"match": true' "$o/correct/gpu-bench.jsonl" || { t "greedy parity failed: stopping"; exit 1; }
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
t "scale 29M"
STAGES=scale SCALE_SIZES=30m SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2>> "$o/scale.stderr"
t "compare builds fp32 29M"
bash scripts/gpu-compare-builds.sh run "$o/compare-29m" 3 -- $common --vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16 --steps 30
t "profile 29M fp32"
timeout 100 node dist/cli/arl.mjs bench $common --vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16 --steps 10 --profile 2>> "$o/profile.stderr" | grep '^{' > "$o/profile-29m-fp32.jsonl"
t "scale 1.1B"
STAGES=scale SCALE_SIZES=1.1b SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2>> "$o/scale.stderr"
t "scale 135M"
STAGES=scale SCALE_SIZES=135m SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2>> "$o/scale.stderr"
t "curves"
STAGES=curves bash scripts/gpu-bench.sh "$o/curves" 2> "$o/curves.stderr"
t "chain done"
