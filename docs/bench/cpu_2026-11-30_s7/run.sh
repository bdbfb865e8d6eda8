#!/usr/bin/env bash
# Seventh session, 2026-11-30: scene-prediction figures on this 2-core machine with nothing else running,
# after carried block reads (predict/carry.py: each file tile decoded once per stripe of 2 block columns)
# and the chunked argmax of the writer (scene_maps.argmax_classes). /tmp/bp holds the scenes.
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s7
# 1. the 2 500 px scene three times
resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 3 --workdir /tmp/bp \
  --json $out/predict_2500_repeat3.json
# 2. the 10 000 px scene three times to completion
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --repeat 3 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_repeat3.json
