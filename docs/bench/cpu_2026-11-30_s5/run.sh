#!/usr/bin/env bash
# Fifth session, 2026-11-30: scene-prediction figures on this 2-core machine with nothing else running.
# /tmp/bp holds the scenes (the first bench predict run writes them; the 10 000 px one is about 1.4 GB).
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s5
# the 10 000 px scene three times to completion, each pass between two 60 s bare timings (about 35 min);
# ran on c2efca8, the fourth session's final code (the CPU path is unchanged since)
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --repeat 3 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_repeat3.json | tee $out/predict_10000_repeat3.txt
# the read stage alone, 1 or 2 readers, GDAL on one thread or all cores (the faster of two runs each)
python $out/read_stage.py /tmp/bp/scene_10000.tif | tee $out/read_stage_10000.jsonl
# the 2 500 px scene three times on the session's final CPU path (readers 1, classes decided by the writer)
resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 3 --workdir /tmp/bp \
  --json $out/predict_2500_repeat3.json | tee $out/predict_2500_repeat3.txt
# Tried without gain (one-off timings, not kept as files): one GDAL handle per reader across the 49 block reads
# (16.1-17.1 s of CPU against 16.5-17.1 s reopening per read); reading into a pixel-interleaved buffer
# (448-515 ms a block against 394-409 ms band-sequential).
# one more 10 000 px pass with its stage timeline, and how much a forward batch slows beside a read or a write
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --bare-seconds 20 --workdir /tmp/bp \
  --timeline $out/timeline --json $out/predict_10000_timeline.json | tee $out/predict_10000_timeline.txt
python $out/timeline_overlap.py docs/bench/cpu_2026-11-30_s4/timeline/timeline_2500.json \
  $out/timeline/timeline_10000.json | tee $out/timeline_overlap.jsonl
