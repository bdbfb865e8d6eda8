# one device run: issue 13 (data path and training step on a GPU) and issue 18 (scene prediction on a GPU)
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ] && [ -z "$NOWHL" ]; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1; fi
export PYTHONPATH=/tmp/site:$PWD
L=$OUT/log.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a $L
$PY -c "import torch, timm, resnet_apps.cli; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.is_available())" 2>&1 | tee -a $L
N=${N:-3072}; SIDE=${SIDE:-512}
$PY .devdata/make_chest.py /tmp/data/chest_xray_pneumonia_kermany $N $SIDE 2>&1 | tee -a $L
export RESNET_APPS_DATA=/tmp/data
R="$PY -m resnet_apps"
CH=recipes/chest_xray_pneumonia_resnet50.yaml
ST=${ST:-60}; B=${B:-32}
echo "== bench data" | tee -a $L
timeout ${TD:-90} $R bench data $CH --seconds 8 --json $OUT/data_chest224.json 2>&1 | tee -a $L
for v in "fp32 false false" "bf16 true false"; do
  set -- $v
  echo "== bench train resnet50 224 batch $B precision $1 channels_last $2 compile $3" | tee -a $L
  timeout ${TT:-150} $R bench train $CH --steps $ST --warmup 10 --rounds 2 --set train.batch_size=$B --set train.precision=$1 --set train.channels_last=$2 --set train.compile=$3 --json $OUT/train_r50_224_${1}_cl$2_compile$3.json 2>&1 | tee -a $L
done
echo "== bench predict" | tee -a $L
timeout ${TP:-300} $R bench predict --device ${DEV:-cuda} --size ${SIZE:-10000} --small ${SMALL:-2500} --batch-size ${PB:-32} --max-seconds 0 --workdir /tmp/bp --json $OUT/predict_${DEV:-cuda}.json 2>&1 | tee -a $L

echo "== bench train resnet50 224 batch $B bf16 channels_last compile" | tee -a $L
timeout ${TC:-150} $R bench train $CH --steps $ST --warmup 10 --rounds 2 --set train.batch_size=$B --set train.precision=bf16 --set train.channels_last=true --set train.compile=true --json $OUT/train_r50_224_bf16_cltrue_compiletrue.json 2>&1 | tail -20 | tee -a $L
echo "== all done" | tee -a $L
