#!/usr/bin/env bash
# Runs one long command on the GPU box across several device calls, none of which outlasts its own limit:
#
#   bash scripts/gpu-detached.sh NAME SECONDS -- node dist/cli/arl.mjs experiment ... --out /tmp/detached/NAME/out
#   bash scripts/gpu-detached.sh NAME SECONDS          (a later call: wait and copy only)
#
# With a command, the call starts it detached, through scripts/gpu-run.sh (RUNNER overrides it; RUNNER= runs the
# command as it is), with its output appended to /tmp/detached/NAME/log, unless a command of that NAME is still
# running. So a resumable command that failed is started again under the same NAME, and its folder is still the one
# copied back. Every call then waits at most SECONDS, copying the folder /tmp/detached/NAME into $OUT/NAME.tgz about
# once a minute (logs, results, predictions, ARL data records; not checkpoints, shards, corpora or test inputs), and returns
# early once the command has ended, its exit status in $OUT/NAME.rc. Give SECONDS well inside the call's limit and
# the session's device time left: a call stopped from outside brings nothing back, while this script's last copy is
# at most a minute old when it returns.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || { [ $# -gt 2 ] && { [ "$3" != "--" ] || [ $# -lt 4 ]; }; }; then
  echo "usage: bash scripts/gpu-detached.sh NAME SECONDS [-- COMMAND...]" >&2
  exit 2
fi
name=$1 seconds=$2
shift $(( $# > 2 ? 3 : 2 ))
: "${OUT:?set OUT to the folder whose files come back}"
[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "NAME must be letters, digits, '.', '_' or '-' (got '$name')" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "SECONDS must be a whole number (got '$seconds')" >&2; exit 2; }
dir=/tmp/detached/$name
deadline=$(( $(date +%s) + seconds ))
runner=${RUNNER-bash scripts/gpu-run.sh}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

# The folder's files under LIMIT (bytes), leaving out checkpoints, shards, prepared corpora and test inputs.
archive() {
  (cd /tmp/detached && find "$name" \( -name runs -o -name data -o -name tests -o -name '*-prepared' \) -prune -o \
    -type f ! -name '*.bin' ! -name '*.safetensors' -size "-$1c" -print0 |
    tar czf "$OUT/$name.part" --null --ignore-failed-read -T - 2>/dev/null) || true
}

copy_back() {
  # Files may change or vanish while they are read (a run writes as it goes): the copy is of what could be read.
  # A call returns files of at most 16 MiB, so an archive over 15 MiB is made again of the files under 1 MB.
  archive 15000000
  [ "$(stat -c %s "$OUT/$name.part")" -le 15728640 ] || archive 1000000
  mv "$OUT/$name.part" "$OUT/$name.tgz"
  if [ -f "$dir/rc" ]; then cp "$dir/rc" "$OUT/$name.rc"; fi
  return 0
}

if [ $# -gt 0 ] && ! running; then
  mkdir -p "$dir"
  rm -f "$dir/rc" "$OUT/$name.rc"
  # The exit status is written by the detached shell itself, so it survives this call.
  # shellcheck disable=SC2086
  setsid nohup bash -c 'cd "$1" && shift && { "$@"; echo $? > "$0/rc"; }' "$dir" "$PWD" $runner "$@" >> "$dir/log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  echo "started $name (pid $(cat "$dir/pid")): $*"
fi

while running && [ $(( deadline - $(date +%s) )) -gt 65 ]; do
  for _ in $(seq 11); do running && sleep 5; done
  copy_back
done
copy_back
if running; then echo "$name still running; call again to wait more"; else echo "$name ended with exit status $(cat "$dir/rc" 2>/dev/null || echo unknown)"; fi
tail -n 5 "$dir/log" || true
