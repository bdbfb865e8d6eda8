#!/bin/bash
# quiet-machine CPU benchmarks, third session of 2026-11-30 (nothing else running; 2 cores)
cd "$(dirname "$0")/../../.." || exit 1
O=docs/bench/cpu_2026-11-30_s3
R=.venv/bin/resnet-apps
for k in "" _b _c _d _e; do
  $R bench data recipes/chest_xray_pneumonia_resnet50.yaml --seconds 10 --per-sample-batches 2 --json $O/data_chest$k.json
done
$R bench data recipes/eurosat_ms_resnet50.yaml --seconds 10 --json $O/data_eurosat_ms.json
# prediction: the complete 10 000 px scene (and 2 500 px), then 5 000 and 2 500 px; --serial for the serial path
$R bench predict --size 10000 --small 2500 --max-seconds 0 --workdir /tmp/bp --json $O/predict_10000_complete_final.json
$R bench predict --size 5000 --small 2500 --max-seconds 0 --workdir /tmp/bp --json $O/predict_5000_2500.json
$R bench predict --size 2500 --small 0 --max-seconds 0 --serial --workdir /tmp/bp --json $O/predict_2500_serial.json
# bench train, Kermany resnet18 at 128 px (3 rounds once, 5 rounds twice)
$R bench train recipes/chest_xray_pneumonia_resnet50.yaml --set model.backbone=resnet18 --set data.image_size=128 --steps 10 --warmup 2 --rounds 3 --json $O/train_chest_r18_128.json
for k in "" _b; do
  $R bench train recipes/chest_xray_pneumonia_resnet50.yaml --set model.backbone=resnet18 --set data.image_size=128 --steps 10 --warmup 2 --rounds 5 --json $O/train_chest_r18_128_5rounds$k.json
done
