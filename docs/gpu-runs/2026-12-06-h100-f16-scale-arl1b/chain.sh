#!/usr/bin/env bash
# The runs of one GPU call, in order of priority; everything lands in /tmp/detached/chain/out.
set -uo pipefail
o=/tmp/detached/chain/out
mkdir -p "$o"
tar xJf .gpu/extra.tar.xz
cp dist/cli/*.wasm dist/before/ 2>/dev/null
t() { echo "[$(date +%T)] $*"; }
t "f16 stage"; STAGES=f16 F16_REPEATS=1 bash scripts/gpu-bench.sh "$o/f16" 2> "$o/f16.stderr"
t "profile 1.1B mixed b4"
timeout 200 node dist/cli/arl.mjs bench --backend webgpu --precision mixed --vocab 32000 --dim 2048 --layers 22 --heads 32 \
  --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 4 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift --profile > "$o/profile-mixed-b4.jsonl" 2> "$o/profile-mixed-b4.err"
t "scale 1.1b"; STAGES=scale SCALE_SIZES=1.1b SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.stderr"
t "arl-1b"; DOCS=50 TOPK=2 PRECISION=mixed bash scripts/gpu-arl-1b.sh "$o/arl-1b"
t "segments before/after"; STAGES=scoring SCORING_ROUNDS=1 SCORING_BUNDLES="dist/before/arl.mjs dist/cli/arl.mjs" bash scripts/gpu-bench.sh "$o/scoring" 2> "$o/scoring.stderr"
t "chain done"
