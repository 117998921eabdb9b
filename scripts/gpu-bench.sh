#!/usr/bin/env bash
# The GPU comparison run, on a box prepared by scripts/gpu-pack.sh (run through scripts/gpu-run.sh):
#   bash scripts/gpu-run.sh bash scripts/gpu-bench.sh OUT_DIR
# 1. PyTorch reference (../shared/bench/torch_gpt_bench.py copied to .gpu/) fp32 and bf16;
# 2. greedy parity of our webgpu path against a transformers fixture;
# 3. our bench on webgpu: the llm.c config, then the model of the PyTorch reference.
# Every result is a JSON line appended to OUT_DIR/gpu-bench.jsonl; stage times go to stderr.
set -uo pipefail
out=${1:?usage: gpu-bench.sh OUT_DIR}
log=$out/gpu-bench.jsonl
arl() { node dist/cli/arl.mjs "$@"; }
stamp() { echo "[$(date +%T)] $*" >&2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/{"gpu":"/; s/$/"}/' >> "$log"
if [ -f .gpu/torch_gpt_bench.py ]; then
  for mode in fp32 bf16; do stamp "torch $mode"; MODE=$mode python3 .gpu/torch_gpt_bench.py >> "$log"; done
fi
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
if [ -f data/prepared/brown/meta.json ]; then
  stamp "training on webgpu vs wasm: the same 30 steps of the tiny preset"
  for backend in webgpu wasm; do
    arl train --backend $backend --data data/prepared/brown --out /tmp/run-$backend --steps 30 --eval-every 0 --save-every 30 >&2
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
stamp "webgpu bench: llm.c config 1"
SECONDS=0
timeout 200 node dist/cli/arl.mjs bench --backend webgpu --steps 10 --gen-context 1000 --gen-tokens 32 >> "$log"
echo "{\"bench\":\"wall\",\"what\":\"webgpu config 1 process\",\"seconds\":$SECONDS}" >> "$log"
stamp "webgpu bench: the PyTorch reference model"
SECONDS=0
timeout "${BIG_TIMEOUT:-280}" node dist/cli/arl.mjs bench --backend webgpu --vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16 --steps 5 --warmup-steps 1 --skip-generate >> "$log"
status=$?
echo "{\"bench\":\"wall\",\"what\":\"webgpu reference-model process\",\"exit\":$status,\"seconds\":$SECONDS}" >> "$log"
stamp done
