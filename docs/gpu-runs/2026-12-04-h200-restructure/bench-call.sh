#!/usr/bin/env bash
# One device call: the f16 tensor-core matmul bench, then training throughput before/after the kernel restructure.
cd "$(dirname "$0")/.."
timeout 110 node dist/bench/f16-matmul-bench.mjs > $OUT/f16-matmul.jsonl 2> $OUT/f16-matmul.err; echo "f16 rc $?"
S="--vocab 8192 --dim 512 --layers 8 --heads 8 --kv-heads 8 --hidden-dim 1368 --seq 512 --batch 16 --steps 30 --warmup-steps 3 --skip-generate --no-key-tokens --no-lift --backend webgpu"
for r in 1 2; do
  for v in new old; do
    if [ $v = new ]; then b=dist/cli/arl.mjs; else b=dist-old/cli/arl.mjs; fi
    timeout 60 node $b bench $S 2>&1 | grep -v '^\s*$' | sed "s/^/$v $r: /" | tee -a $OUT/restructure-bench.log | tail -3
  done
done
