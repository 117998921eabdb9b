#!/usr/bin/env bash
# Runs one long command on the GPU box across several device calls, none of which outlasts its own limit:
#
#   bash scripts/gpu-detached.sh NAME SECONDS -- node dist/cli/arl.mjs experiment ... --out /tmp/detached/NAME/out
#
# The first call starts the command detached, through scripts/gpu-run.sh (RUNNER overrides it; RUNNER= runs the
# command as it is), with its output in /tmp/detached/NAME/log. Every call then waits at most SECONDS, copying the
# folder /tmp/detached/NAME into $OUT/NAME.tgz about once a minute (files under 2 MB: logs, results, predictions;
# not checkpoints or shards), and returns early once the command has ended, its exit status in $OUT/NAME.rc.
# A later call with the same NAME only waits and copies. Give SECONDS well inside the call's limit and the session's
# device time left: a call stopped from outside brings nothing back, while this script's last copy is at most a
# minute old when it returns.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: bash scripts/gpu-detached.sh NAME SECONDS -- COMMAND..." >&2
  exit 2
fi
name=$1 seconds=$2
shift 3
: "${OUT:?set OUT to the folder whose files come back}"
[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "NAME must be letters, digits, '.', '_' or '-' (got '$name')" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "SECONDS must be a whole number (got '$seconds')" >&2; exit 2; }
dir=/tmp/detached/$name
deadline=$(( $(date +%s) + seconds ))
runner=${RUNNER-bash scripts/gpu-run.sh}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

copy_back() {
  (cd /tmp/detached && find "$name" -type f -size -2M -print0 | tar czf "$OUT/$name.part" --null -T -) && mv "$OUT/$name.part" "$OUT/$name.tgz"
  [ -f "$dir/rc" ] && cp "$dir/rc" "$OUT/$name.rc"
  return 0
}

if [ ! -f "$dir/pid" ]; then
  mkdir -p "$dir"
  # The exit status is written by the detached shell itself, so it survives this call.
  # shellcheck disable=SC2086
  setsid nohup bash -c 'cd "$1" && shift && { "$@"; echo $? > "$0/rc"; }' "$dir" "$PWD" $runner "$@" > "$dir/log" 2>&1 < /dev/null &
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
