#!/usr/bin/env bash
# Sixth session, 2026-11-30: scene-prediction figures on this 2-core machine with nothing else running.
# /tmp/bp holds the scenes (the first bench predict run writes them).
set -euo pipefail
out=docs/bench/cpu_2026-11-30_s6
# 1. a trial, reverted (35a385f, reverted in 4db46b6): glibc's mmap threshold at 512 MiB instead of 32 MiB,
#    because an FPN batch of 8 x 256 px tiles has 33.5 MB activations (8,000-16,000 page faults a batch at
#    32 MiB, none at 512 MiB, and the same 1.20-1.23 s a batch either way in isolation). One 10 000 px pass
#    and three 2 500 px passes on that build:
#      resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --bare-seconds 20 --workdir /tmp/bp \
#        --json $out/predict_10000_mmap512.json
#      resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 3 --workdir /tmp/bp \
#        --json $out/predict_2500_mmap512.json
#    ratio 0.969 at 10 000 px, 0.900/0.918/0.955 at 2 500 px; peak RSS 2,186 against 2,018 MB (+168 MB)
# 2. the 10 000 px scene three times on the final code, with the hypervisor's steal per pass and bare timing
resnet-apps bench predict --size 10000 --small 0 --max-seconds 0 --repeat 3 --bare-seconds 60 --workdir /tmp/bp \
  --json $out/predict_10000_repeat3.json | tee $out/predict_10000_repeat3.txt
# 3. a trial, not kept: the serial path with GDAL decoding on both cores (a local switch of
#    predict_scene's decode_threads for the CPU, not in the code), interleaved with the pipeline at 5 000 px:
#      resnet-apps bench predict --size 5000 --small 0 --max-seconds 0 --workdir /tmp/bp --json $out/predict_5000_pipe_K.json
#      (switch on) resnet-apps bench predict --size 5000 --small 0 --max-seconds 0 --serial --workdir /tmp/bp \
#        --json $out/predict_5000_serdec_K.json
#    pipeline 0.952 and 0.949, serial with decoding threads 0.921 and 0.969: no difference this machine can show
# 4. the 2 500 px scene three times on the final code (peak RSS against the 10 000 px passes above)
resnet-apps bench predict --size 2500 --small 0 --max-seconds 0 --repeat 3 --workdir /tmp/bp \
  --json $out/predict_2500_repeat3.json | tee $out/predict_2500_repeat3.txt
