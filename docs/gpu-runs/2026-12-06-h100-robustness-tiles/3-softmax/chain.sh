#!/usr/bin/env bash
# Build 4bc0e82: the softmax that reads its row once: a profiled 1.1B mixed step, the 1.1B scale stage, key-token scoring, the 29M
# scale stage. Output: /tmp/detached/c3/out.
set -uo pipefail
o=/tmp/detached/c3/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
t "profile 1.1B mixed b4"
timeout 200 node dist/cli/arl.mjs bench --backend webgpu --precision mixed --vocab 32000 --dim 2048 --layers 22 --heads 32 \
  --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 4 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift --profile 2>> "$o/profile.stderr" | grep '^{' > "$o/profile-mixed-b4.jsonl"
t "scale 1.1b"; STAGES=scale SCALE_SIZES=1.1b SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-1.1b" 2> "$o/scale.stderr"
t "scoring"; STAGES=scoring SCORING_ROUNDS=3 bash scripts/gpu-bench.sh "$o/scoring" 2> "$o/scoring.stderr"
t "scale 30m"; STAGES=scale SCALE_SIZES=30m SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-30m" 2>> "$o/scale.stderr"
t "chain done"
