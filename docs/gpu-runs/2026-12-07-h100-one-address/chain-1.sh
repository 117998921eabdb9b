#!/usr/bin/env bash
# One address per operand (tiling option a) beside the default at the 1.1B products; 1.1B training in turns; then the
# scale stage (1.1B first) with the default, or with a where it won every round by over 1%.
set -uo pipefail
o=/tmp/detached/c9/out
mkdir -p "$o"
t() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$o/gpu.csv"
cat "$o/gpu.csv"
D=128x128/16uvi,128x64/16uvi
A=128x128/16uvia,128x64/16uvia
t "products"
MODELS=1.1b TILINGS="$D $A 128x128/16uvwia,128x64/16uvwia" timeout 120 node dist/bench/matmul-bench.mjs > "$o/products.jsonl" 2>> "$o/products.stderr"
grep -o '"tiling":"[^"]*"\|"residency[^,]*' "$o/products.jsonl" | sort | uniq -c | head -20
common="--backend webgpu --warmup-steps 1 --skip-generate --no-key-tokens --no-lift"
m1b="--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8"
for r in 1 2; do for v in "ARL_MATMUL_TILING=$D" "ARL_MATMUL_TILING=$A"; do
  t "1.1b round $r $v"
  env $v timeout 60 node dist/cli/arl.mjs bench $common $m1b 2>> "$o/stderr" | grep '"bench":"train"' | sed "s|^{|{\"variant\":\"$v\",\"round\":$r,|" >> "$o/steps-1b.jsonl"
done; done
win=$(python3 - "$o/steps-1b.jsonl" "$D" "$A" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
tps = {}
for r in rows: tps.setdefault(r['variant'], {})[r['round']] = r['tokens_per_s']
base, a = tps.get('ARL_MATMUL_TILING=' + sys.argv[2], {}), tps.get('ARL_MATMUL_TILING=' + sys.argv[3], {})
print('ARL_MATMUL_TILING=' + sys.argv[3] if base and set(a) == set(base) and min(a[k] / base[k] for k in base) > 1.01 else '')
PY
)
echo "${win:-default}" > "$o/scale-tiling.txt"
t "scale with ${win:-the default tiling}"
[ -n "$win" ] && export "$win"
STAGES=scale SCALE_SIZES="1.1b 135m 30m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.log"
t "chain done"
