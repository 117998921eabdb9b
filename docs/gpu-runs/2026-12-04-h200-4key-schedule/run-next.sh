#!/usr/bin/env bash
# Not run yet: the next pilot (curriculum and more steps), four variants side by side; all logs in one $OUT/pilot-logs.tgz
# (a device call returns at most eight files). Rows from export-rows.mts in ../2026-12-04-h200-4key-pilot/, 48,000 each:
#   node --import tsx docs/gpu-runs/2026-12-04-h200-4key-pilot/export-rows.mts rows2 niah_single,niah_multikey 48000
#   node --import tsx docs/gpu-runs/2026-12-04-h200-4key-pilot/export-rows.mts rows-mk niah_multikey 48000
cd "$(dirname "$0")"
mkdir -p logs
export MID=1000 DEADLINE=540 TEXT=rows2/text_tokens.i16
STEPS=3000 ROWS=rows2 ROWS_AFTER=rows-mk SWITCH=1750 SCHED=cos python3 torch_pilot.py > logs/switch1750-cos.log 2>&1 &
STEPS=3000 ROWS=rows2 ROWS_AFTER=rows-mk SWITCH=1750 SCHED=wsd python3 torch_pilot.py > logs/switch1750-wsd.log 2>&1 &
STEPS=6000 ROWS=rows2 SCHED=cos python3 torch_pilot.py > logs/mix-6000-cos.log 2>&1 &
STEPS=6000 ROWS=rows2 ROWS_AFTER=rows-mk SWITCH=2000 SCHED=cos python3 torch_pilot.py > logs/switch2000-6000-cos.log 2>&1 &
wait
tar czf "$OUT/pilot-logs.tgz" logs
