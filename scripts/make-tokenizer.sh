#!/usr/bin/env bash
# Rebuilds the bundled SentencePiece model data/tokenizer/brown.{model,vocab} from the Brown corpus.
# Needs spm_train (Debian/Ubuntu: apt-get install sentencepiece); only used here, never at run time.
# Deterministic: one thread, every input sentence, no shuffling.
set -euo pipefail
cd "$(dirname "$0")/.."

# spm_train records its --input and --model_prefix in the model, so run it in a scratch folder with fixed
# relative names to keep the output byte-identical between runs.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
node --import tsx scripts/export-brown.ts "$work/brown.txt"

# Llama conventions: BPE, unk=0 bos=1 eos=2, no pad, byte fallback, digits split, text kept verbatim
# (identity normalization, whitespace preserved, so "\n\n" round-trips via byte pieces).
# Paragraphs are the training "sentences", hence the raised max_sentence_length.
(cd "$work" && spm_train \
  --input=brown.txt \
  --model_prefix=brown \
  --model_type=bpe \
  --vocab_size=4096 \
  --character_coverage=1.0 \
  --byte_fallback=true \
  --split_digits=true \
  --user_defined_symbols='<recap>,</recap>' \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --normalization_rule_name=identity \
  --remove_extra_whitespaces=false \
  --allow_whitespace_only_pieces=true \
  --max_sentence_length=16384 \
  --input_sentence_size=0 \
  --shuffle_input_sentence=false \
  --num_threads=1 \
  --minloglevel=1)
mkdir -p data/tokenizer
mv "$work/brown.model" "$work/brown.vocab" data/tokenizer/
