#!/usr/bin/env bash
# Eighth session, 2026-11-30: scene-prediction figures on this 2-core machine with nothing else running.
# Each block's classes are now decided in the forward's thread as it finishes (scene_maps.decide_block);
# --writer-decides gives the old placement for comparison. /tmp/bp holds the scenes.
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s8
B="resnet-apps bench predict --small 0 --max-seconds 0 --workdir /tmp/bp"
# 1. both placements, at commit 896ed76 (peak_rss_mb then the process's lifetime peak, bare timings included)
$B --size 2500 --repeat 3 --writer-decides --json $out/predict_2500_writer_decides.json
$B --size 2500 --repeat 3 --json $out/predict_2500_forward_decides.json
$B --size 10000 --repeat 1 --bare-seconds 30 --writer-decides --json $out/predict_10000_writer_decides.json
$B --size 10000 --repeat 3 --bare-seconds 60 --json $out/predict_10000_forward_decides.json
# 2. at commit 5f10177: peak_rss_mb is each pass's own (VmHWM reset before it); the same pipeline
#    (in 2. and 3., peak_rss_mb_incl_bare_forward is the peak since the last reset, not the lifetime one:
#    fixed in the commit after them)
$B --size 2500 --repeat 3 --json $out/predict_2500_pass_peaks.json
$B --size 10000 --repeat 3 --bare-seconds 60 --json $out/predict_10000_pass_peaks.json
# 3. the final code (6dbaa4f on): freed memory handed back after each scene and before each timed pass
$B --size 2500 --repeat 3 --json $out/predict_2500_final.json
$B --size 10000 --repeat 2 --bare-seconds 30 --json $out/predict_10000_final.json
# 4. no model: where the carried reads' CPU goes (all block reads of the 10 000 px scene on one core)
python $out/read_prof.py /tmp/bp/scene_10000.tif
