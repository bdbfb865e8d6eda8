#!/bin/bash
# quiet-machine CPU benchmarks: both training runs are SIGSTOPped for the duration, then continued
cd /work/main
O=/work/notes/cpu_bench
PIDS=$(pgrep -f "resnet-apps train")
trap 'kill -CONT $PIDS' EXIT
kill -STOP $PIDS; sleep 2
uptime > $O/uptime_start.txt
R=.venv/bin/resnet-apps
$R bench train recipes/eurosat_ms_resnet50.yaml --set model.backbone=resnet18 --steps 20 --warmup 3 --rounds 3 --json $O/train_eurosat_ms_r18.json > $O/train_eurosat_ms_r18.txt 2>&1
$R bench train recipes/chest_xray_pneumonia_resnet50.yaml --set model.backbone=resnet18 --set data.image_size=128 --steps 10 --warmup 2 --rounds 3 --json $O/train_chest_r18_128.json > $O/train_chest_r18_128.txt 2>&1
$R bench data recipes/eurosat_ms_resnet50.yaml --seconds 10 --json $O/data_eurosat_ms.json > $O/data_eurosat_ms.txt 2>&1
$R bench predict --size 2500 --small 0 --max-seconds 0 --json $O/predict_2500.json > $O/predict_2500.txt 2>&1
uptime > $O/uptime_end.txt
kill -CONT $PIDS
