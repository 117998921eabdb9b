#!/usr/bin/env bash
# Times several builds of arl against each other on one machine, so a change is measured against its base on the same
# GPU (machines of one kind differ by several percent; docs/benchmarks.md).
#
#   bash scripts/gpu-compare-builds.sh pack REV...
#       Here: bundles each git revision (npm run build in a scratch worktree) into .gpu/build-REV.mjs.xz (about 1 MB
#       each, so several fit the GPU call's carry). The working tree's own build stays dist/cli ("current").
#   bash scripts/gpu-run.sh bash scripts/gpu-compare-builds.sh run OUT ROUNDS -- ARL_BENCH_ARGS...
#       On the GPU box: ROUNDS rounds, each running `arl bench ARL_BENCH_ARGS` once per packed build and the current
#       one, in turn. OUT/compare.jsonl gets every JSON line of each run with "build" and "round" added;
#       OUT/clocks.csv the GPU's clocks, power and temperature every 0.5 s (nvidia-smi, where present).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  echo "usage: bash scripts/gpu-compare-builds.sh pack REV... | run OUT ROUNDS -- ARL_BENCH_ARGS..." >&2
  exit 2
}
[ $# -ge 1 ] || usage
case $1 in
  pack)
    shift
    [ $# -ge 1 ] || usage
    mkdir -p .gpu
    for rev in "$@"; do
      short=$(git rev-parse --short "$rev^{commit}") || { echo "not a revision: $rev" >&2; exit 2; }
      tree=$(mktemp -d)
      git worktree add -q --detach "$tree" "$short"
      ln -s "$PWD/node_modules" "$tree/node_modules"
      (cd "$tree" && npm run --silent build > /dev/null)
      xz -T0 -c "$tree/dist/cli/arl.mjs" > ".gpu/build-$short.mjs.xz.tmp" && mv ".gpu/build-$short.mjs.xz.tmp" ".gpu/build-$short.mjs.xz"
      git worktree remove --force "$tree"
      echo "packed $rev as .gpu/build-$short.mjs.xz"
    done
    ;;
  run)
    [ $# -ge 4 ] && [ "$4" = -- ] || usage
    out=$2 rounds=$3
    shift 4
    [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number (got '$rounds')" >&2; exit 2; }
    [ -f dist/cli/arl.mjs ] || { echo "dist/cli/arl.mjs is missing: run npm run build (scripts/gpu-pack.sh does) and carry dist/cli" >&2; exit 2; }
    mkdir -p "$out"
    builds=(current)
    for packed in .gpu/build-*.mjs.xz; do
      [ -e "$packed" ] || continue
      name=$(basename "$packed" .mjs.xz)
      mkdir -p "dist/$name"
      xz -dc "$packed" > "dist/$name/arl.mjs"
      cp dist/cli/*.wasm "dist/$name/"
      builds+=("$name")
    done
    smi=
    if command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu --format=csv -lms 500 > "$out/clocks.csv" &
      smi=$!
    fi
    for round in $(seq "$rounds"); do
      for build in "${builds[@]}"; do
        cli=dist/$build/arl.mjs
        [ "$build" = current ] && cli=dist/cli/arl.mjs
        echo "[$(date +%T)] round $round: $build" >&2
        node "$cli" bench "$@" 2>> "$out/compare.stderr" | grep '^{' | sed "s/^{/{\"build\":\"$build\",\"round\":$round,/" >> "$out/compare.jsonl" || true
      done
    done
    [ -n "$smi" ] && kill "$smi"
    echo "wrote $out/compare.jsonl" >&2
    ;;
  *) usage ;;
esac
