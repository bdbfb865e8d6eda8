#!/bin/bash
cd /work/main
O=/work/notes/cpu_bench
PIDS=$(pgrep -f "resnet-apps train")
trap 'kill -CONT $PIDS' EXIT
kill -STOP $PIDS; sleep 2
uptime > $O/uptime3_start.txt
R=.venv/bin/resnet-apps
$R bench predict --size 2500 --small 0 --max-seconds 0 --workdir /tmp/bpq --json $O/predict_2500_c.json > $O/predict_2500_c.txt 2>&1
uptime > $O/uptime3_end.txt
