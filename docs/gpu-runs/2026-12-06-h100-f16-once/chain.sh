#!/usr/bin/env bash
# Build 3e611c9 (.gpu/build-3e611c9.mjs.xz) against the current build (dist/cli: each operand made f16 once a step,
# softmax writing its f16 operands, attention's layout pass in one kernel each way), 1.1B mixed, in turns, clocks
# sampled; PyTorch fp32 at that shape; a profiled mixed step; then the scale stage at 1.1B, 135M and 29M, and the
# key-token scoring cost at 135M. Most wanted first. Output: /tmp/detached/c1/out.
set -uo pipefail
o=/tmp/detached/c1/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
shape="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
t "compare builds, 1.1B mixed, 3 rounds"
bash scripts/gpu-compare-builds.sh run "$o/compare" 3 -- --backend webgpu --precision mixed $shape --steps 20
t "torch fp32"
V=32000 D=2048 L=22 H=32 KV=4 F=5632 T=1024 B=4 TIE=0 MODE=fp32 timeout 150 python3 .gpu/torch_llama_bench.py >> "$o/torch.jsonl" 2>> "$o/torch.stderr"
t "profile current mixed"
timeout 200 node dist/cli/arl.mjs bench --backend webgpu --precision mixed $shape --steps 4 --profile 2>> "$o/profile.stderr" | grep '^{' > "$o/profile-mixed-b4.jsonl"
t "scale 1.1b"
STAGES=scale SCALE_SIZES=1.1b SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-1b" 2> "$o/scale-1b.stderr"
t "scale 135m 30m"
STAGES=scale SCALE_SIZES="135m 30m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale-small" 2> "$o/scale-small.stderr"
t "scoring cost 135m"
for r in 1 2 3; do
  timeout 150 node dist/cli/arl.mjs bench --backend webgpu --vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --seq 1024 --batch 8 --tie-embeddings --steps 3 --skip-generate --no-lift 2>> "$o/keytokens.stderr" | grep '^{' | sed "s/^{/{\"round\":$r,/" >> "$o/keytokens.jsonl"
done
t "chain done"
