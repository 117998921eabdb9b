#!/usr/bin/env bash
# The GPU work, in order of priority, under one detached command.
d=/tmp/detached/lift
stamp() { echo "[$(date +%T)] chain: $*"; }
stamp "LIFT experiment"
node dist/cli/arl.mjs experiment --size small --backend webgpu --seeds 1 --parts lift --workers 8 --out $d/out
echo "lift rc $?" > $d/lift.rc
stamp "scoring"
bundles=dist/cli/arl.mjs
[ -f dist/before/arl.mjs ] && bundles="dist/before/arl.mjs dist/cli/arl.mjs"
STAGES=scoring SCORING_ROUNDS=2 SCORING_BUNDLES="$bundles" SCORING_POOL_MB=1024 bash scripts/gpu-bench.sh $d/bench
STAGES=scoring SCORING_ROUNDS=1 SCORING_BUNDLES=dist/cli/arl.mjs SCORING_POOL_MB=8192 bash scripts/gpu-bench.sh $d/bench
stamp "curves"
STAGES=curves bash scripts/gpu-bench.sh $d/bench
stamp "arl 1b"
TOPK=2 PRECISION=mixed bash scripts/gpu-arl-1b.sh $d/arl1b
stamp "done"
