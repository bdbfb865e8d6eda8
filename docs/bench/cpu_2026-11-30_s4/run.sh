#!/usr/bin/env bash
# Fourth session, 2026-11-30: the scene-prediction figures of the final code, on this 2-core machine with
# nothing else running. /tmp/bp holds the 10 000 px scene (written by the first run; about 1.4 GB).
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s4
# both scene sizes in one run (peak RSS side by side); the bare forward timed for 60 s before and after each pass
resnet-apps bench predict --size 10000 --small 2500 --max-seconds 0 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_2500.json | tee $out/predict_10000_2500.txt
# the small scene five times, each pass between two 20 s bare timings; the median pass is reported
resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 5 --workdir /tmp/bp \
  --json $out/predict_2500_repeat5.json | tee $out/predict_2500_repeat5.txt
# Earlier the same session, along the changes (same bench commands, files named for the code they ran):
#   predict_2500_repeat5_before_early_first_block.json   --size 2500 --small 0 --repeat 5 (commit 333e934)
#   predict_2500_repeat5_early_first_block.json          the same after the early first block (3e7568d, before
#                                                        the memory fix, which changes no computation)
#   predict_10000_early_first_block_before_memory_fix.json  --size 10000 --small 0 --bare-seconds 60 (3e7568d)
# The two commands at the top ran on 9d61f0d, the final code of the session.
# After the fill/drain and timeline figures were added (commit after 9d61f0d; the computation is unchanged):
#   resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 3 --workdir /tmp/bp \
#     --timeline $out/timeline --json $out/predict_2500_repeat3_timeline.json
# OMP_WAIT_POLICY=PASSIVE against the default (two runs each, --bare-seconds 15; not kept as files):
#   ratio 0.875 / 1.000 against 0.954 / 0.971, pass tiles/s 5.64 / 5.86 against 6.30 / 6.34, read wall 6.2-6.4 s
#   against 12.9-13.5 s: the reader gets the cores the spinning OpenMP threads held, but the forward slows.
