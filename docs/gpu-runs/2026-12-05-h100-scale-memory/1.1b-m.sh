for cfg in "fp32 4" "fp32 2" "mixed 4"; do set -- $cfg
 (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done) > $OUT/mem-$1-$2.txt &
 p=$!
 timeout 130 node dist/cli/arl.mjs bench --backend webgpu --precision $1 --vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch $2 --steps 6 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift > $OUT/bench-$1-$2.log 2>&1
 echo "$1 B$2 exit $? peak $(sort -n $OUT/mem-$1-$2.txt | tail -1) MiB"; kill $p
 grep -h 'tokens_per_s' $OUT/bench-$1-$2.log | head -c 600; echo
done
