# Tiny 8x8 RGB pictures, one folder per label: dark ones and light ones.
python - <<'PY'
import pathlib
import cv2
import numpy

rng = numpy.random.RandomState(0)
for folder, base, count in [("train/dark", 40, 8), ("train/light", 210, 8), ("unknown", 45, 1)]:
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = numpy.clip(base + rng.randint(-30, 30, (8, 8, 3)), 0, 255)
        cv2.imwrite(f"{folder}/{index}.png", pixels.astype(numpy.uint8))
cv2.imwrite("unknown/1.png", numpy.full((8, 8, 3), 200, numpy.uint8))
PY

# The network: flatten the 8x8x3 pixels, one linear layer to two classes.
cat > net.json <<'JSON'
{"model1": {"flatten": {"layer_type": "Flatten"},
            "linear": {"layer_type": "Linear", "in_features": 192, "out_features": 2}}}
JSON

dffml train -model pytorchnet_archive \
    -model-features image:int:192 -model-predict label:str:1 \
    -model-classifications dark light -model-network @net.json \
    -model-normalize_mean 0.5 0.5 0.5 -model-normalize_std 0.25 0.25 0.25 \
    -model-optimizer Adam -model-batch_size 2 -model-epochs 5 \
    -model-location pictures.tar.gz \
    -sources f=dir -source-foldername train -source-feature image \
    -source-labels dark light
# The archive holds the network, the options and the trained weights.
dffml accuracy -model pytorchnet_archive -model-location pictures.tar.gz \
    -sources f=dir -source-foldername train -source-feature image \
    -source-labels dark light

mkdir -p shipped
mv pictures.tar.gz shipped/
# Records hold the pictures too: show each one's key and prediction.
dffml predict all -model pytorchnet_archive -model-location shipped/pictures.tar.gz \
    -sources f=dir -source-foldername unknown -source-feature image |
    python -c 'import json, sys
for record in sorted(json.load(sys.stdin), key=lambda record: record["key"]):
    print(record["key"], json.dumps(record["prediction"], sort_keys=True))'
