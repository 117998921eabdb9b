#!/usr/bin/env bash
# The GPU comparison run, on a box prepared by scripts/gpu-pack.sh (run through scripts/gpu-run.sh):
#   bash scripts/gpu-run.sh bash scripts/gpu-bench.sh OUT_DIR
# Stages (STAGES="..." picks some; default: torch compat parity train config1 big soak):
#   torch    PyTorch reference (../shared/bench/torch_gpt_bench.py copied to .gpu/), fp32 and bf16
#   compat   transformers loads `arl export --format hf` (.gpu/compat/hf) and matches our logits
#            (.gpu/compat/ours-logits.json from scripts/compat-logits.ts) within 1e-4
#   parity   greedy continuation of a transformers fixture on webgpu, token for token
#   train    the same 30 training steps of the tiny preset on webgpu and wasm, from one checkpoint (TRAIN_DATA: a prepared
#            corpus, default data/prepared/brown, prepared first where it is missing; preparing needs node_modules,
#            so a bundled GPU box gets it carried: scripts/gpu-pack.sh prepares it here)
#   curves   300-step training loss curves (CURVE_STEPS) of the base preset, T 512, batch 16, on TRAIN_DATA, in fp32 and
#            --precision mixed, each with the seeds CURVE_SEEDS (default "1234 1235"): one "loss-curves" line with every
#            run's validation losses, the mixed - fp32 gap at each evaluation per seed, and the fp32 seed-to-seed gap,
#            the noise that gap is judged against
#   config1  our bench on the llm.c config 1 (generation with and without the KV cache)
#   big      our bench on the model of the PyTorch reference, with ARL key-token scoring against a plain forward
#   scoring  ARL key-token scoring of the big model against its plain forward, SCORING_ROUNDS rounds (default 2) of
#            each build in SCORING_BUNDLES (default dist/cli/arl.mjs; an older build beside it compares the two) under
#            each GPU pool cap in SCORING_POOL_MB (default 1024): the bench's keytokens, segments and forward lines, tagged with
#            bundle, pool_mb and round
#   soak     1,000 training steps of config 1: tensors and GPU bytes must stay flat
#   scale    Llama shapes (SCALE_SIZES, default "30m 135m 1.1b", at T/B 512/16, 1024/8, 1024/4; SCALE_SEQ, SCALE_BATCH override),
#            each side timing the same steps after its warm-up (50 at 29M, whose steps take ~50 ms, so that one hiccup
#            moves a process's figure less; 10 at the others; SCALE_STEPS overrides): PyTorch fp32 and bf16
#            (../shared/bench/torch_llama_bench.py copied to .gpu/), ours fp32 and --precision mixed; one "scale" line
#            per size with torch_*_tokens_per_s, ours_tokens_per_s and ours_mixed_tokens_per_s (null, with
#            ours_mixed_refused, where the start-up check refused); each side in SCALE_REPEATS processes (default 3),
#            interleaved: the line holds medians, per-round ratios' medians, and each one's [min, max] under "spread";
#            *_gpu_mb: the device's peak used memory (nvidia-smi) per side
#   f16      the f16 tensor-core matmul (dist/bench/f16-matmul-bench.mjs, from npm run build; carry dist/bench): every
#            tiling of the bench's default list at the 1.1B projection shapes (nn, tn, nt), then F16_ATTENTION_TILINGS at
#            attention's batched shapes (1.1B, batch 4: 16 products of 8192 x 64 x 1024 and the gradients' shapes); one
#            "f16-matmul" line per product (ms, TFLOP/s, checked against f32). Then 1.1B training (batch 4, mixed) in
#            F16_REPEATS rounds (default 2) of: the default, the fastest correct tiling of the projection sweep
#            (ARL_F16_TILING), and attention's products in f32 (ARL_MIXED_ATTENTION=0): train lines tagged "variant"
#   f32      the f32 matmul (dist/bench/matmul-bench.mjs; carry dist/bench): every tiling of the bench's default list
#            at every product of the 29M, SmolLM-135M and TinyLlama-1.1B shapes (one "matmul" line per product and
#            tiling, one "total_ms" line per model and tiling); cuBLAS fp32 at the 1.1B products and the HF 1.1B step's
#            kernel time by kind (scripts/torch-matmul-bench.py: "torch-matmul" and "torch-step-profile" lines); then
#            fp32 training at 29M, 135M and 1.1B in F32_REPEATS rounds (default 2) of the default, every tile of a split
#            product split (ARL_MATMUL_SPLIT_TAIL=0), K split by the fixed rule (ARL_MATMUL_WAVES=0) and the tiling with
#            the least total over that model's products (ARL_MATMUL_TILING), train lines tagged "tiling", "waves",
#            "split_tail" and "round"
#   ablate   the big model under other settings: ABLATE_ENV="VAR=value ...;VAR=value" (one run per
#            ';'-separated set), e.g. ARL_TFJS_FLAGS=WEBGPU_MATMUL_PROGRAM_TYPE=3 or
#            ARL_DAWN_FLAGS=enable-dawn-features=disable_robustness; ABLATE_GENERATE=1 also times generation;
#            ABLATE_STEPS timed steps (default 4); ARL_BUNDLE=FILE in a set runs another build of the CLI
# PROFILE=1 adds per-kernel GPU times (tf.profile) to config1, big, scale and ablate. GPU_NAME=TEXT runs nothing (exit 3,
# one line) unless the GPU's name contains TEXT, e.g. GPU_NAME=H200 where only that card's figures count. Every result
# is a JSON line appended to OUT_DIR/gpu-bench.jsonl; stage times go to stderr.
set -uo pipefail
out=${1:?usage: gpu-bench.sh OUT_DIR}
if [ -n "${GPU_NAME:-}" ]; then
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  [[ "$card" == *"$GPU_NAME"* ]] || { echo "gpu-bench: the GPU is '${card:-none found}', not one named '$GPU_NAME': nothing run" >&2; exit 3; }
fi
mkdir -p "$out"
log=$out/gpu-bench.jsonl
stages=${STAGES:-torch compat parity train config1 big soak}
profile=${PROFILE:+--profile}
big_model=(--vocab 8192 --dim 512 --layers 8 --heads 8 --hidden-dim 1368 --tie-embeddings --seq 512 --batch 16)
arl() { node dist/cli/arl.mjs "$@"; }
stamp() { echo "[$(date +%T)] $*" >&2; }
has() { [[ " $stages " == *" $1 "* ]]; }
wall() { echo "{\"bench\":\"wall\",\"what\":\"$1\",\"exit\":$2,\"seconds\":$SECONDS}" >> "$log"; }
# Runs a command while sampling the device's used memory (nvidia-smi, every 0.2 s), writing the peak in MiB to $1:
# the same measure for both sides, where tfjs's own count (live tensors only) and PyTorch's (its allocator's
# tensors only) leave out memory pools and the runtime.
with_peak_memory() {
  local file=$1 sampler rc
  shift
  (peak=0; while sleep 0.2; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1) || break
    if [[ "$used" =~ ^[0-9]+$ ]] && [ "$used" -gt "$peak" ]; then peak=$used; echo "$peak" > "$file"; fi
  done) &
  sampler=$!
  "$@"
  rc=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  return $rc
}
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
# The default corpus is prepared here from the bundled Brown corpus (seconds) where it was not carried.
if { has train || has curves; } && [ -z "${TRAIN_DATA:-}" ] && [ ! -f "$train_data/meta.json" ]; then
  stamp "preparing $train_data"
  arl prepare >&2
fi
if has train && [ -f "$train_data/meta.json" ]; then
  stamp "training on webgpu vs wasm: the same 30 steps of the tiny preset from the same weights"
  # Both start from one checkpoint (one wasm step), since webgpu draws its initial weights with its own generator.
  rm -rf /tmp/run-init
  timeout 120 node dist/cli/arl.mjs train --backend wasm --data "$train_data" --out /tmp/run-init --steps 1 --eval-every 0 --save-every 1 >&2
  for backend in webgpu wasm; do
    rm -rf /tmp/run-$backend
    timeout 120 node dist/cli/arl.mjs train --backend $backend --init /tmp/run-init --data "$train_data" --out /tmp/run-$backend --steps 30 --eval-every 0 --save-every 30 >&2
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
if has curves && [ -f "$train_data/meta.json" ]; then
  seeds=${CURVE_SEEDS:-1234 1235}
  for seed in $seeds; do
    for precision in fp32 mixed; do
      stamp "loss curve: $precision, seed $seed"
      SECONDS=0
      rm -rf "/tmp/curve-$precision-$seed"
      timeout 600 node dist/cli/arl.mjs train --backend webgpu --precision $precision --preset base --seq 512 --batch 16 \
        --steps "${CURVE_STEPS:-300}" --seed "$seed" --data "$train_data" --eval-every 50 --save-every "${CURVE_STEPS:-300}" \
        --out "/tmp/curve-$precision-$seed" >&2
      wall "loss curve $precision seed $seed" $?
    done
  done
  python3 - $seeds >> "$log" <<'PY'
import json, sys
seeds = sys.argv[1:]
def val(precision, seed):
    try:
        rows = [json.loads(l) for l in open(f"/tmp/curve-{precision}-{seed}/metrics.jsonl")]
    except OSError:
        return {}
    return {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
runs = {f"{p}-{s}": val(p, s) for s in seeds for p in ("fp32", "mixed")}
steps = sorted(set.intersection(*(set(v) for v in runs.values()))) if all(runs.values()) else []
gap = {s: [round(runs[f"mixed-{s}"][t] - runs[f"fp32-{s}"][t], 4) for t in steps] for s in seeds}
noise = [round(abs(runs[f"fp32-{seeds[0]}"][t] - runs[f"fp32-{seeds[1]}"][t]), 4) for t in steps] if len(seeds) > 1 else []
print(json.dumps({"bench": "loss-curves", "steps": steps, "val_loss": runs, "mixed_minus_fp32": gap, "fp32_seed_gap": noise}))
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
  timeout "${BIG_TIMEOUT:-240}" node dist/cli/arl.mjs bench --backend webgpu "${big_model[@]}" --steps "${BIG_STEPS:-10}" --warmup-steps 1 --gen-context 1000 --gen-tokens 64 --no-lift $profile >> "$log"
  wall "webgpu reference-model process" $?
fi
if has scoring; then
  for round in $(seq "${SCORING_ROUNDS:-2}"); do
    for bundle in ${SCORING_BUNDLES:-dist/cli/arl.mjs}; do
      for mb in ${SCORING_POOL_MB:-1024}; do
        stamp "key-token scoring: $bundle, pool cap $mb MiB, round $round"
        ARL_GPU_POOL_MB=$mb timeout 120 node "$bundle" bench --backend webgpu "${big_model[@]}" --steps 2 --warmup-steps 1 \
          --skip-generate --no-lift | grep -E '"bench":"(keytokens|segments|forward)"' |
          sed "s|^{|{\"bundle\":\"$bundle\",\"pool_mb\":$mb,\"round\":$round,|" >> "$log"
      done
    done
  done
fi
if has soak; then
  stamp "webgpu: 1,000 training steps (tensor and GPU buffer growth)"
  SECONDS=0
  timeout 240 node dist/cli/arl.mjs bench --backend webgpu --steps 1000 --warmup-steps 1 --skip-generate --no-key-tokens --no-lift >> "$log"
  wall "webgpu 1,000-step soak" $?
fi
if has scale; then
  for size in ${SCALE_SIZES:-30m 135m 1.1b}; do
    case $size in
      30m) V=8192 D=512 L=8 H=8 KV=8 F=1368 TIE=1 T=512 B=16 shape=ref-29m steps=50 ;;
      135m) V=49152 D=576 L=30 H=9 KV=3 F=1536 TIE=1 T=1024 B=8 shape=smollm-135m steps=10 ;;
      1.1b) V=32000 D=2048 L=22 H=32 KV=4 F=5632 TIE=0 T=1024 B=4 shape=tinyllama-1.1b steps=10 ;;
      *) stamp "scale: unknown size $size"; continue ;;
    esac
    T=${SCALE_SEQ:-$T} B=${SCALE_BATCH:-$B} steps=${SCALE_STEPS:-$steps}
    tmp=$(mktemp -d)
    tie=()
    [ "$TIE" = 1 ] && tie=(--tie-embeddings)
    # Each side runs in SCALE_REPEATS separate processes, interleaved, so a ratio comes with its spread.
    for rep in $(seq "${SCALE_REPEATS:-3}"); do
      if [ -f .gpu/torch_llama_bench.py ]; then
        for mode in fp32 bf16; do
          stamp "scale $size: torch $mode ($rep)"
          V=$V D=$D L=$L H=$H KV=$KV F=$F T=$T B=$B TIE=$TIE N=$steps MODE=$mode with_peak_memory "$tmp/torch-$mode-$rep.peak" \
            timeout 900 python3 .gpu/torch_llama_bench.py > "$tmp/torch-$mode-$rep.json"
          # Each process's line in the log too, so a stage cut short keeps what it measured.
          cat "$tmp/torch-$mode-$rep.json" >> "$log"
        done
      fi
      for precision in fp32 mixed; do
        stamp "scale $size: ours $precision ($rep)"
        SECONDS=0
        with_peak_memory "$tmp/ours-$precision-$rep.peak" timeout "${SCALE_TIMEOUT:-900}" node dist/cli/arl.mjs bench --backend webgpu --precision $precision --vocab $V --dim $D --layers $L --heads $H \
          --kv-heads $KV --hidden-dim $F "${tie[@]}" --seq $T --batch $B --steps $steps --warmup-steps 1 --skip-generate --no-key-tokens --no-lift $profile \
          > "$tmp/ours-$precision-$rep.jsonl" 2> "$tmp/ours-$precision-$rep.err"
        wall "scale $size ours $precision ($rep)" $?
        cat "$tmp/ours-$precision-$rep.jsonl" >> "$log"
      done
    done
    python3 - "$shape" "$tmp" >> "$log" <<'PY'
import glob, json, os, statistics, sys
shape, tmp = sys.argv[1], sys.argv[2]
def lines(path):
    out = []
    for l in open(path):
        try: out.append(json.loads(l))
        except ValueError: pass
    return out
def repeat_of(path):
    """The repeat number in a per-process file's name (torch-fp32-2.json -> 2)."""
    return int(path.rsplit("-", 1)[1].split(".")[0])
def runs(pattern, bench, field):
    """The field's value in each process's last line of that bench, by repeat number (None where a process gave none)."""
    values = {}
    for path in glob.glob(f"{tmp}/{pattern}"):
        got = [l for l in lines(path) if l.get("bench") == bench]
        values[repeat_of(path)] = got[-1].get(field) if got else None
    return values
torch = lambda mode, field="tok_per_s": runs(f"torch-{mode}-*.json", "torch-llama", field)
ours = lambda precision, field="tokens_per_s": runs(f"ours-{precision}-*.jsonl", "train", field)
def median(values):
    got = [v for v in values.values() if v is not None]
    return statistics.median(got) if got else None
def spread(values):
    got = [v for v in values.values() if v is not None]
    return [min(got), max(got)] if got else None
mb = lambda b: round(b / 2**20) if b is not None else None
def refusal(precision):
    errs = [l.strip() for path in sorted(glob.glob(f"{tmp}/ours-{precision}-*.err")) for l in open(path) if l.startswith("arl:")]
    return errs[-1] if errs else None
def peaks(prefix):
    """The peak used memory (MiB) sampled during each process of that side, by repeat number."""
    values = {}
    for path in glob.glob(f"{tmp}/{prefix}-*.peak"):
        text = open(path).read().strip()
        values[repeat_of(path)] = int(text) if text.isdigit() else None
    return values
def ratios(a, b):
    """Per repeat: ours / torch of the same round."""
    return {k: round(a[k] / b[k], 3) for k in a if a.get(k) and b.get(k)}
t32, t16, o32, omix = torch("fp32"), torch("bf16"), ours("fp32"), ours("mixed")
row = {"bench": "scale", "shape": shape, "repeats": len(o32),
       "torch_fp32_tokens_per_s": median(t32), "torch_bf16_tokens_per_s": median(t16),
       "ours_tokens_per_s": median(o32), "ours_mixed_tokens_per_s": median(omix),
       "first_step_done_s": median(ours("fp32", "first_step_done_s")),
       # *_gpu_mb: the device's peak used memory while that process ran (nvidia-smi), median over the processes.
       "ours_gpu_mb": median(peaks("ours-fp32")), "ours_mixed_gpu_mb": median(peaks("ours-mixed")),
       "torch_fp32_gpu_mb": median(peaks("torch-fp32")), "torch_bf16_gpu_mb": median(peaks("torch-bf16")),
       # What each side counts itself: tfjs's live tensors and all its buffers (pool included) after the last step, PyTorch's peak allocated tensors.
       "ours_tensors_mb": mb(median(ours("fp32", "gpu_bytes_after"))), "ours_buffers_mb": mb(median(ours("fp32", "gpu_bytes_allocated"))),
       "torch_fp32_allocated_mb": round(median(torch("fp32", "max_mem_gb")) * 1024) if median(torch("fp32", "max_mem_gb")) is not None else None,
       "spread": {"torch_fp32_tokens_per_s": spread(t32), "torch_bf16_tokens_per_s": spread(t16), "ours_tokens_per_s": spread(o32),
                  "ours_mixed_tokens_per_s": spread(omix), "ours_vs_torch_fp32": spread(ratios(o32, t32)),
                  "ours_mixed_vs_torch_fp32": spread(ratios(omix, t32)), "ours_mixed_vs_torch_bf16": spread(ratios(omix, t16))}}
# Medians of the per-round ratios; the spread above gives their range over the rounds.
row.update(ours_vs_torch_fp32=median(ratios(o32, t32)), ours_mixed_vs_torch_fp32=median(ratios(omix, t32)),
           ours_mixed_vs_torch_bf16=median(ratios(omix, t16)))
if row["ours_mixed_tokens_per_s"] is None: row["ours_mixed_refused"] = refusal("mixed")
print(json.dumps(row))
PY
  done
fi
if has f32; then
  stamp "f32 matmul: the reference models' products, every tiling"
  node dist/bench/matmul-bench.mjs | tee "$out/f32-matmul.jsonl" >> "$log"
  stamp "f32 matmul: cuBLAS at the 1.1B products, and the HF 1.1B step's kernel time by kind"
  STEP=1 timeout 300 python3 scripts/torch-matmul-bench.py | tee "$out/f32-torch-matmul.jsonl" >> "$log"
  for size in 29m 135m 1.1b; do
    case $size in
      29m) shape=("${big_model[@]}" --steps 20) ;;
      135m) shape=(--vocab 49152 --dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden-dim 1536 --tie-embeddings --seq 1024 --batch 8 --steps 10) ;;
      1.1b) shape=(--vocab 32000 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps 8) ;;
    esac
    # The tiling with the least total over this model's products, every product of it correct.
    fastest=$(python3 - "$out/f32-matmul.jsonl" "$size" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
bad = {r["tiling"] for r in rows if r.get("max_rel_error", 0) > 1e-4}
totals = {r["tiling"]: r["total_ms"] for r in rows if r.get("model") == sys.argv[2] and "total_ms" in r and r["tiling"] not in bad}
print(min(totals, key=totals.get) if totals else "")
PY
)
    echo "{\"bench\":\"f32-fastest-tiling\",\"model\":\"$size\",\"tiling\":\"${fastest:-none}\"}" >> "$log"
    # Each round: the default, every tile of a split product split, K split by the fixed rule, the fastest tiling.
    for round in $(seq "${F32_REPEATS:-2}"); do
      for variant in "1 1 " "1 0 " "0 1 " ${fastest:+"1 1 $fastest"}; do
        read -r waves tail tiling <<< "$variant"
        stamp "f32 $size training, round $round, waves $waves, split tail $tail, tiling ${tiling:-default}"
        ARL_MATMUL_WAVES=$waves ARL_MATMUL_SPLIT_TAIL=$tail ARL_MATMUL_TILING=$tiling timeout 300 node dist/cli/arl.mjs bench --backend webgpu "${shape[@]}" --warmup-steps 1 --skip-generate --no-key-tokens --no-lift $profile |
          grep '"bench":"train"' | sed "s|^{|{\"tiling\":\"${tiling:-default}\",\"waves\":$waves,\"split_tail\":$tail,\"round\":$round,|" >> "$log"
      done
    done
  done
fi
if has f16; then
  stamp "f16 matmul: projection shapes, every tiling"
  ITER=10 TRANSPOSES=nn,tn,nt node dist/bench/f16-matmul-bench.mjs | tee "$out/f16-projections.jsonl" >> "$log"
  attention_tilings=${F16_ATTENTION_TILINGS:-2x2/2x2/32,2x4/2x2/32,4x4/2x2/32,2x2/2x2/32m}
  # 1.1B, batch 4: scores (and dP) [8192 x 64] x [1024 x 64]^T; context (and dQ) [8192 x 1024] x [1024 x 64]; dV (and dK) [8192 x 1024]^T x [8192 x 64].
  for product in "nt 16x8192x64x1024" "nn 16x8192x1024x64" "tn 16x1024x8192x64"; do
    read -r transpose shape <<< "$product"
    stamp "f16 matmul: attention $shape $transpose"
    F16_TILINGS=$attention_tilings ITER=10 TRANSPOSES=$transpose SHAPES=$shape node dist/bench/f16-matmul-bench.mjs >> "$log"
  done
  # The tiling with the least total time over the projection sweep, every one of its products correct; empty where
  # that is the default (the bench's first line names it) or none ran.
  fastest=$(python3 - "$out/f16-projections.jsonl" <<'PY'
import collections, json, sys
total, count, bad, default = collections.Counter(), collections.Counter(), set(), None
for line in open(sys.argv[1]):
    if not line.startswith("{"): continue  # a driver's or Dawn's messages on stdout
    r = json.loads(line)
    default = r.get("default_tiling", default)
    if r.get("tiling") in (None, "f32"): continue
    if "ms" not in r or not r.get("correct"): bad.add(r["tiling"]); continue
    total[r["tiling"]] += r["ms"]; count[r["tiling"]] += 1
full = max(count.values(), default=0)
ok = [t for t in total if t not in bad and count[t] == full]
best = min(ok, key=lambda t: total[t]) if ok else ""
print("" if best == default else best)
PY
)
  echo "{\"bench\":\"f16-fastest-tiling\",\"tiling\":\"${fastest:-default}\"}" >> "$log"
  variants=("default:" "attention-f32:ARL_MIXED_ATTENTION=0")
  [ -n "$fastest" ] && variants+=("tiling-$fastest:ARL_F16_TILING=$fastest")
  for round in $(seq "${F16_REPEATS:-2}"); do
    for variant in "${variants[@]}"; do
      name=${variant%%:*} flags=${variant#*:}
      stamp "1.1B mixed training: $name ($round)"
      # shellcheck disable=SC2086 # flags is empty or one VAR=value word
      env $flags timeout 150 node dist/cli/arl.mjs bench --backend webgpu --precision mixed --vocab 32000 --dim 2048 --layers 22 --heads 32 \
        --kv-heads 4 --hidden-dim 5632 --seq 1024 --batch 4 --steps "${SCALE_STEPS:-10}" --warmup-steps 1 --skip-generate --no-key-tokens --no-lift $profile |
        sed "s|^{|{\"variant\":\"$name\",\"round\":$round,|" >> "$log"
    done
  done
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
