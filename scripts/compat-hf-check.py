"""Loads an `arl export --format hf` directory with transformers and compares its logits with ours.

    python3 scripts/compat-hf-check.py EXPORT_DIR OURS_LOGITS.json
OURS_LOGITS.json comes from `node --import tsx scripts/compat-logits.ts CHECKPOINT OUT.json`.
Prints one JSON line; exits 1 when the largest absolute difference is above 1e-4.
"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

export_dir, ours_path = sys.argv[1], sys.argv[2]
ours = json.load(open(ours_path))
model = AutoModelForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32).eval()
with torch.no_grad():
    theirs = model(torch.tensor([ours["prompt"]])).logits[0].double()
want = torch.tensor(ours["logits"], dtype=torch.float64).reshape(theirs.shape)
diff = (theirs - want).abs().max().item()
same_argmax = bool((theirs.argmax(-1) == want.argmax(-1)).all())
print(json.dumps({"bench": "hf-logits-parity", "transformers": transformers.__version__, "torch": torch.__version__,
                  "positions": len(ours["prompt"]), "vocab": ours["vocab"], "max_abs_diff": diff,
                  "argmax_equal": same_argmax, "ok": diff <= 1e-4}))
sys.exit(0 if diff <= 1e-4 else 1)
