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
# 3. the same again, twice more (passes 4-6 and 7-9)
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --repeat 3 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_repeat3_b.json
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --repeat 3 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_repeat3_c.json
# 4. peak RSS with glibc's arenas capped, against the default: one 2 500 px pass and half a 10 000 px pass each
MALLOC_ARENA_MAX=1 resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --bare-seconds 10 --workdir /tmp/bp \
  --json $out/predict_2500_one_arena1.json
MALLOC_ARENA_MAX=1 resnet-apps bench predict --size 10000 --small 0 --max-seconds 200 --bare-seconds 10 --workdir /tmp/bp \
  --json $out/predict_10000_half_arena1.json
resnet-apps bench predict --size 10000 --small 0 --max-seconds 200 --bare-seconds 10 --workdir /tmp/bp \
  --json $out/predict_10000_half_default.json
resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --bare-seconds 10 --workdir /tmp/bp \
  --json $out/predict_2500_one_default.json
# 5. no model: all block reads of the 10 000 px scene on one core, plain against carried (carry_cpu.py), and
#    the class map's COG writer alone at 2 500 and 10 000 px with GDAL's cache at 128 and 32 MB (cog_close_rss.py)
python carry_cpu.py /tmp/bp/scene_10000.tif plain carry plain carry
for c in 128 32; do for n in 2500 10000; do python cog_close_rss.py $c $n; done; done
