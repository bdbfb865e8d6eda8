# Issue 18 on a lent GPU: one short run that says whether the reader, the forward (+ blend) and the writer
# overlap on the device, and what the fifth session's changes give: four readers (the default beside a GPU)
# against one, classes decided on the device, tiles sent from pinned memory without a synchronize per batch
# (the forward timed with CUDA events, "device" in the timeline). None of these has run on a GPU yet: a
# failure here is the first sign of a bug in them. Prepared on 2026-11-30 (fourth and fifth sessions,
# no GPU lent); run through the device tool as
#   bash docs/bench/gpu_next/predict_timeline.sh
# with the wheels carried as for docs/bench/gpu_2026-11-30/gpu2.sh (.whl/, installed with --no-index).
# Budget: about 5 min of device time (three 10 000 px passes of about 20 s, scene writing about 90 s).
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ]; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1; fi
export PYTHONPATH=/tmp/site:$PWD
L=$OUT/log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a $L
# the pipeline (default readers: 4 here), with every stage interval per thread for the reported pass
timeout 300 $PY -m resnet_apps bench predict --device cuda --size 10000 --small 2500 --batch-size 32 \
  --max-seconds 0 --bare-seconds 10 --workdir /tmp/bp --timeline $OUT/timeline \
  --json $OUT/predict_cuda_timeline.json 2>&1 | grep -v Warning | tee -a $L
# one reader, as on the CPU: what the reader pool adds
timeout 150 $PY -m resnet_apps bench predict --device cuda --size 10000 --small 0 --batch-size 32 \
  --max-seconds 0 --bare-seconds 10 --workdir /tmp/bp --readers 1 --timeline $OUT/timeline_one_reader \
  --json $OUT/predict_cuda_one_reader.json 2>&1 | grep -v Warning | tee -a $L
# the serial path on the same scenes: if the pipeline's wall is near the serial one, the stages do not overlap
timeout 200 $PY -m resnet_apps bench predict --device cuda --size 10000 --small 0 --batch-size 32 \
  --max-seconds 0 --bare-seconds 10 --workdir /tmp/bp --serial --timeline $OUT/timeline_serial \
  --json $OUT/predict_cuda_serial.json 2>&1 | grep -v Warning | tee -a $L
# what to read: in timeline_10000.json, whether "read" (scene-reader) and "write" (scene-writer) intervals lie
# beside "forward"/"blend" (MainThread) or between them; fill_seconds/drain_seconds and "close" in the JSON
echo "== all done" | tee -a $L
