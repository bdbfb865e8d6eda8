# second device run: scene prediction with GDAL's threaded decode; resnet50 224 at GPU-sized batches
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
L=$OUT/log2.txt
python3 .devdata/make_chest.py /tmp/data/chest_xray_pneumonia_kermany 3072 512 2>&1 | tee -a $L
export RESNET_APPS_DATA=/tmp/data
R="python3 -m resnet_apps"
CH=recipes/chest_xray_pneumonia_resnet50.yaml
echo "== bench predict" | tee -a $L
timeout 200 $R bench predict --device cuda --size 10000 --small 2500 --batch-size 32 --max-seconds 0 --workdir /tmp/bp --json $OUT/predict_cuda_gdalthreads.json 2>&1 | grep -v Warning | tee -a $L
for B in 32 128 256; do
  echo "== bench train resnet50 224 batch $B bf16 channels_last" | tee -a $L
  timeout 100 $R bench train $CH --steps 30 --warmup 8 --rounds 2 --set train.batch_size=$B --set train.precision=bf16 --set train.channels_last=true --json $OUT/train_r50_224_bf16_cl_b$B.json 2>&1 | grep -v -i "warn\|fetch_version" | tee -a $L
done
echo "== all done" | tee -a $L
