#!/usr/bin/env bash
# Five pilot variants side by side on one GPU; logs to $OUT/pilot-*.log.
cd "$(dirname "$0")"
for r in rows2 rows-mk; do [ -d $r ] || { mkdir -p $r && tar xzf $r.tgz -C $r; }; done
export STEPS=3000 MID=1000 DEADLINE=420 TEXT=rows2/text_tokens.i16
ROWS=rows2   SCHED=wsd LR=1.5e-3 python3 torch_pilot.py > $OUT/pilot-mix-wsd.log 2>&1 &
ROWS=rows-mk SCHED=cos LR=1.5e-3 python3 torch_pilot.py > $OUT/pilot-mk-cos.log 2>&1 &
ROWS=rows-mk SCHED=wsd LR=1.5e-3 python3 torch_pilot.py > $OUT/pilot-mk-wsd.log 2>&1 &
ROWS=rows-mk SCHED=wsd LR=3e-3   python3 torch_pilot.py > $OUT/pilot-mk-wsd-lr3.log 2>&1 &
ROWS=rows-mk SCHED=wsd LR=1.5e-3 NT=10 NC=4 python3 torch_pilot.py > $OUT/pilot-mk-wsd-nt10.log 2>&1 &
wait
