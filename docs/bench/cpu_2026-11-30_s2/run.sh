#!/bin/bash
# quiet-machine CPU benchmarks, second session of 2026-11-30 (nothing else running; 2 cores)
cd "$(dirname "$0")/../../.." || exit 1
O=docs/bench/cpu_2026-11-30_s2
R=.venv/bin/resnet-apps
uptime > $O/uptime_start.txt
$R bench data recipes/eurosat_ms_resnet50.yaml --seconds 10 --json $O/data_eurosat_ms.json > $O/data_eurosat_ms.txt 2>&1
$R bench data recipes/chest_xray_pneumonia_resnet50.yaml --seconds 10 --per-sample-batches 2 --json $O/data_chest.json > $O/data_chest.txt 2>&1
$R bench train recipes/eurosat_ms_resnet50.yaml --set model.backbone=resnet18 --steps 20 --warmup 3 --rounds 3 --json $O/train_eurosat_ms_r18.json > $O/train_eurosat_ms_r18.txt 2>&1
$R bench train recipes/chest_xray_pneumonia_resnet50.yaml --set model.backbone=resnet18 --set data.image_size=128 --steps 10 --warmup 2 --rounds 3 --json $O/train_chest_r18_128.json > $O/train_chest_r18_128.txt 2>&1
uptime > $O/uptime_end.txt
