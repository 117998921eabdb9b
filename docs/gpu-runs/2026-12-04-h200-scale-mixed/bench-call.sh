#!/usr/bin/env bash
# One device call: the f16 tensor-core matmul bench, then the scale stage (PyTorch fp32/bf16, ours fp32/mixed).
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt 2>&1
SECONDS=0
TRANSPOSES=nn,tn,nt ITER=10 timeout 120 node dist/bench/f16-matmul-bench.mjs > $OUT/f16-matmul.jsonl 2> $OUT/f16-matmul.err; echo "f16 rc $? ${SECONDS}s"
STAGES=scale SCALE_SIZES="1.1b 30m 135m" PROFILE=1 SCALE_TIMEOUT=170 bash scripts/gpu-bench.sh $OUT/bench 2> $OUT/bench.err; echo "bench rc $? ${SECONDS}s"
tail -5 $OUT/bench.err
grep '"scale"' $OUT/bench/gpu-bench.jsonl
