#!/usr/bin/env bash
# Memory and the 1.1B ARL pipeline after the freeing backward pass.
o=/tmp/o; mkdir -p $o
bench() { local name=$1 precision=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > $o/$name.mem 2>/dev/null & local s=$!
  timeout 100 env "$@" node dist/cli/arl.mjs bench --backend webgpu --vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --precision $precision --steps 5 --skip-generate --no-key-tokens --no-lift > $o/$name.jsonl 2>&1
  echo "$name rc $? peak_mb $(sort -n $o/$name.mem | tail -1) $(grep -o '"tokens_per_s":[0-9.]*\|"gpu_bytes_allocated":[0-9]*\|"first_step_done_s":[0-9.]*' $o/$name.jsonl | head -4 | tr '\n' ' ')"
  kill $s; }
bench b4-fp32 fp32
bench b4-mixed mixed
bench b4-fp32-flash fp32 ARL_FLASH_ATTENTION=1
timeout ${ARL_SECONDS:-330} bash scripts/gpu-arl-1b.sh $o/arl
grep -v "^    at\|^ - While" $o/arl/recap-data.log | tail -5 | cut -c1-300
tail -3 $o/arl/train.log $o/arl/answer.log 2>/dev/null | cut -c1-400
tar czf $OUT/mem-run.tgz -C $o .
