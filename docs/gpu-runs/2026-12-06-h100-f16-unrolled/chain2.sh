#!/usr/bin/env bash
# The f16 matmul with its tile loops written out (dist/bench) against the build before (dist/before-bench), then 1.1B
# training at the fastest correct tiling of the new build, then the 1.1B scale comparison. Output: /tmp/detached/chain2/out.
set -uo pipefail
o=/tmp/detached/chain2/out
mkdir -p "$o"
tar xJf .gpu/extra2.tar.xz
t() { echo "[$(date +%T)] $*"; }
tilings=2x2/2x2/32,2x4/2x2/32,4x2/2x2/32,4x4/2x2/32,2x2/4x2/32,2x2/2x4/32,4x2/2x4/32,2x2/2x2/64,4x4/2x2/64,2x2/2x2/16,2x2/2x2/0,4x4/1x1/32
for build in before-bench bench; do
  t "f16 projections: $build"
  F16_TILINGS=$tilings ITER=10 TRANSPOSES=nn,tn,nt node dist/$build/f16-matmul-bench.mjs 2>> "$o/f16.stderr" | grep '^{' | sed "s|^{|{\"build\":\"$build\",|" >> "$o/f16.jsonl"
done
fastest=$(python3 - "$o/f16.jsonl" <<'PY'
import collections, json, sys
total, count, bad = collections.Counter(), collections.Counter(), set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("build") != "bench" or r.get("tiling") in (None, "f32"): continue
    if "ms" not in r or not r.get("correct"): bad.add(r["tiling"]); continue
    total[r["tiling"]] += r["ms"]; count[r["tiling"]] += 1
full = max(count.values(), default=0)
ok = [t for t in total if t not in bad and count[t] == full]
print(min(ok, key=lambda t: total[t]) if ok else "2x2/2x2/32")
PY
)
t "fastest tiling of the new build: $fastest"
for shape in "nt 16x8192x64x1024" "nn 16x8192x1024x64" "tn 16x1024x8192x64"; do
  read -r tr sh <<< "$shape"
  F16_TILINGS="2x2/2x2/32,$fastest" ITER=10 TRANSPOSES=$tr SHAPES=$sh node dist/bench/f16-matmul-bench.mjs 2>> "$o/f16.stderr" | grep '^{' >> "$o/f16-attention.jsonl"
done
for tiling in 2x2/2x2/32 "$fastest"; do
  t "1.1B mixed, tiling $tiling"
  ARL_F16_TILING=$tiling timeout 150 node dist/cli/arl.mjs bench --backend webgpu --precision mixed --vocab 32000 --dim 2048 --layers 22 --heads 32 \
    --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 10 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift 2>> "$o/train.stderr" |
    grep '^{' | sed "s|^{|{\"tiling\":\"$tiling\",|" >> "$o/train.jsonl"
done
t "scale 1.1b and 135m at tiling $fastest"
ARL_F16_TILING=$fastest STAGES=scale SCALE_SIZES="1.1b 135m" SCALE_REPEATS=3 SCALE_TIMEOUT=150 bash scripts/gpu-bench.sh "$o/scale" 2> "$o/scale.stderr"
t "chain done"
