#!/usr/bin/env bash
# Ninth session, 2026-11-30: scene-prediction figures on this 2-core machine with nothing else running.
# Block reads now go through SceneReader.read_into (io.geotiff_windows.WindowDecoder: one dataset per thread,
# tiles decoded straight into their block). /tmp/bp holds the scenes. Each bench ran with PYTHONPATH at the
# commit named, from a git worktree.
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s9
B="resnet-apps bench predict --small 0 --max-seconds 0 --workdir /tmp/bp"
# 1. A/B at 2 500 px, one after the other: 582ad6a (direct decodes), d3bf4e8 (the eighth session's code), 582ad6a
$B --size 2500 --repeat 3 --json $out/ab_2500_new_a.json     # at 582ad6a
$B --size 2500 --repeat 3 --json $out/ab_2500_old.json       # at d3bf4e8
$B --size 2500 --repeat 3 --json $out/ab_2500_new_b.json     # at 582ad6a
# 2. the serial path (no reader or writer thread beside the forward), at 582ad6a
$B --size 2500 --repeat 2 --serial --json $out/serial_2500.json
# 3. the final code (9bd45f1: only the padding zeroed before a strip is decoded into it)
$B --size 2500 --repeat 5 --json $out/final_2500.json
$B --size 10000 --repeat 2 --bare-seconds 30 --json $out/final_10000.json
# 4. no model: where the carried reads' CPU goes (all block reads on one core), and plain block reads
#    through read_raw (before) and read_window (now), 1 and 2 readers, GDAL decoding on all cores
python $out/read_prof.py /tmp/bp/scene_2500.tif
python $out/read_prof.py /tmp/bp/scene_10000.tif
python $out/read_stage.py /tmp/bp/scene_10000.tif
# 5. the final code again (410c2ad: the same code, tiles_decoded_direct added to the JSON)
$B --size 2500 --repeat 5 --json $out/confirm_2500.json
$B --size 10000 --repeat 2 --bare-seconds 30 --json $out/confirm_10000.json
