#!/usr/bin/env bash
# The GPU comparison run, on a box prepared by scripts/gpu-pack.sh (run through scripts/gpu-run.sh):
#   bash scripts/gpu-run.sh bash scripts/gpu-bench.sh OUT_DIR
# Stages (STAGES="..." picks some; default all but ablate):
#   torch    PyTorch reference (../shared/bench/torch_gpt_bench.py copied to .gpu/), fp32 and bf16
#   compat   transformers loads `arl export --format hf` (.gpu/compat/hf) and matches our logits
#            (.gpu/compat/ours-logits.json from scripts/compat-logits.ts) within 1e-4
#   parity   greedy continuation of a transformers fixture on webgpu, token for token
#   train    the same 30 training steps of the tiny preset on webgpu and wasm (TRAIN_DATA: a prepared
#            corpus, default data/prepared/brown)
#   config1  our bench on the llm.c config 1 (generation with and without the KV cache)
#   big      our bench on the model of the PyTorch reference
#   soak     1,000 training steps of config 1: tensors and GPU bytes must stay flat
#   ablate   the big model under other settings: ABLATE_ENV="VAR=value ...;VAR=value" (one run per
#            ';'-separated set), e.g. ARL_TFJS_FLAGS=WEBGPU_MATMUL_PROGRAM_TYPE=3 or
#            ARL_DAWN_FLAGS=enable-dawn-features=disable_robustness; ABLATE_GENERATE=1 also times generation;
#            ABLATE_STEPS timed steps (default 4); ARL_BUNDLE=FILE in a set runs another build of the CLI
# PROFILE=1 adds per-kernel GPU times (tf.profile) to config1, big and ablate. Every result is a JSON line
# appended to OUT_DIR/gpu-bench.jsonl; stage times go to stderr.
set -uo pipefail
out=${1:?usage: gpu-bench.sh OUT_DIR}
mkdir -p "$out"
log=$out/gpu-bench.jsonl
stages=${STAGES:-torch compat parity train config1 big soak}
profile=${PROFILE:+--profile}
big_model=(--vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16)
arl() { node dist/cli/arl.mjs "$@"; }
stamp() { echo "[$(date +%T)] $*" >&2; }
has() { [[ " $stages " == *" $1 "* ]]; }
wall() { echo "{\"bench\":\"wall\",\"what\":\"$1\",\"exit\":$2,\"seconds\":$SECONDS}" >> "$log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/{"gpu":"/; s/$/"}/' >> "$log"
if has torch && [ -f .gpu/torch_gpt_bench.py ]; then
  for mode in fp32 bf16; do stamp "torch $mode"; MODE=$mode python3 .gpu/torch_gpt_bench.py >> "$log"; done
fi
if has compat && [ -f .gpu/compat/ours-logits.json ]; then
  stamp "transformers logits parity"
  python3 scripts/compat-hf-check.py .gpu/compat/hf .gpu/compat/ours-logits.json >> "$log"
fi
if has parity; then
  stamp "webgpu parity (mha-tied fixture)"
  fixture=test/fixtures/hf/mha-tied
  arl import --hf $fixture --out /tmp/parity-ckpt >&2
  prompt=$(python3 -c "import json;print(','.join(map(str,json.load(open('$fixture/reference.json'))['greedy']['prompt'])))")
  got=$(arl generate --backend webgpu --checkpoint /tmp/parity-ckpt --prompt-ids "$prompt" --max-new-tokens 12 --greedy --json --no-stop-at-eos)
  python3 - "$fixture/reference.json" "$got" >> "$log" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))['greedy']; got = json.loads(sys.argv[2])['ids']
want = ref['output'][len(ref['prompt']):]
print(json.dumps({"bench": "webgpu-greedy-parity", "match": got == want, "got": got, "want": want}))
PY
fi
train_data=${TRAIN_DATA:-data/prepared/brown}
if has train && [ -f "$train_data/meta.json" ]; then
  stamp "training on webgpu vs wasm: the same 30 steps of the tiny preset"
  for backend in webgpu wasm; do
    timeout 120 node dist/cli/arl.mjs train --backend $backend --data "$train_data" --out /tmp/run-$backend --steps 30 --eval-every 0 --save-every 30 >&2
  done
  python3 - >> "$log" <<'PY'
import json
losses = {b: [json.loads(l)["loss"] for l in open(f"/tmp/run-{b}/metrics.jsonl")] for b in ("webgpu", "wasm")}
speed = {b: [json.loads(l)["tokens_per_s"] for l in open(f"/tmp/run-{b}/metrics.jsonl")][-1] for b in ("webgpu", "wasm")}
diff = max(abs(a - b) for a, b in zip(losses["webgpu"], losses["wasm"]))
print(json.dumps({"bench": "train-webgpu-vs-wasm", "steps": len(losses["webgpu"]), "max_loss_diff": diff,
                  "first_last_webgpu": [losses["webgpu"][0], losses["webgpu"][-1]], "first_last_wasm": [losses["wasm"][0], losses["wasm"][-1]],
                  "tokens_per_s_last_step": speed}))
PY
fi
if has config1; then
  stamp "webgpu bench: llm.c config 1"
  SECONDS=0
  timeout 200 node dist/cli/arl.mjs bench --backend webgpu --steps 10 --gen-context 1000 --gen-tokens 32 --no-lift $profile >> "$log"
  wall "webgpu config 1 process" $?
fi
if has big; then
  stamp "webgpu bench: the PyTorch reference model"
  SECONDS=0
  timeout "${BIG_TIMEOUT:-240}" node dist/cli/arl.mjs bench --backend webgpu "${big_model[@]}" --steps "${BIG_STEPS:-10}" --warmup-steps 1 --gen-context 1000 --gen-tokens 64 --no-key-tokens --no-lift $profile >> "$log"
  wall "webgpu reference-model process" $?
fi
if has soak; then
  stamp "webgpu: 1,000 training steps (tensor and GPU buffer growth)"
  SECONDS=0
  timeout 240 node dist/cli/arl.mjs bench --backend webgpu --steps 1000 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift >> "$log"
  wall "webgpu 1,000-step soak" $?
fi
if has ablate; then
  IFS=';' read -ra env_sets <<< "${ABLATE_ENV:-ARL_TFJS_FLAGS=WEBGPU_MATMUL_PROGRAM_TYPE=3}"
  for flags in "${env_sets[@]}"; do
    stamp "ablation: $flags"
    SECONDS=0
    echo "{\"bench\":\"ablation\",\"env\":\"$flags\"}" >> "$log"
    # shellcheck disable=SC2086 # each set is a list of VAR=value words
    generation=(--skip-generate)
    [ -n "${ABLATE_GENERATE:-}" ] && generation=(--gen-context 1000 --gen-tokens 16)
    bundle=$(env $flags bash -c 'echo "${ARL_BUNDLE:-dist/cli/arl.mjs}"')
    env $flags timeout 120 node "$bundle" bench --backend webgpu "${big_model[@]}" --steps "${ABLATE_STEPS:-4}" --warmup-steps 1 "${generation[@]}" --no-key-tokens --no-lift $profile >> "$log"
    wall "ablation $flags" $?
  done
fi
stamp done
