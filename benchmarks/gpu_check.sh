#!/usr/bin/env bash
# GPU check (issue 19): on a machine with an NVIDIA GPU and TensorRT, build fp32, fp16 and int8
# engines of the bundled model and of one imported architecture (an AlphaPose SimplePose
# ResNet-50 state dict with its exact keys and random weights: no weights can be downloaded),
# run `rmpe-bench parity` and `rmpe-bench latency` against PyTorch and ONNX Runtime, and print
# the tables. Without a GPU or TensorRT it says so and exits 0.
#   usage: benchmarks/gpu_check.sh [OUT_DIR]      (from a checkout, after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
BIN=$(dirname "$PY")
OUT=${1:-gpu-check}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); nothing to check"
    exit 0
fi
if ! "$PY" -c "import tensorrt" >/dev/null 2>&1; then
    echo "gpu_check: no TensorRT Python module ($PY -m pip install tensorrt cuda-python); nothing to check"
    exit 0
fi
mkdir -p "$OUT"
nvidia-smi -L
"$PY" -c "import tensorrt; print('TensorRT', tensorrt.__version__)"

export_all() {  # NAME [rmpe-export flags...]: fp32, fp16 and int8 exports with engines under OUT/NAME-*
    local name=$1; shift
    "$BIN/rmpe-export" "$@" --engine --out "$OUT/$name-fp32"
    "$BIN/rmpe-export" "$@" --fp16 --engine --out "$OUT/$name-fp16"
    "$BIN/rmpe-export" "$@" --int8 --calib synth --engine --out "$OUT/$name-int8"
}
plans() { echo "$OUT/$1-fp32/model.plan" "$OUT/$1-fp16/model.plan" "$OUT/$1-int8/model.plan"; }

echo "== engines: bundled model"
export_all bundled
echo "== engines: AlphaPose SimplePose ResNet-50 (exact keys, random weights)"
PYTHONPATH=tests "$PY" -c "
import sys, torch
from source_models import random_state
torch.save(random_state('alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt'), sys.argv[1])" "$OUT/simplepose.pth"
export_all simplepose --checkpoint "$OUT/simplepose.pth"

echo "== parity: bundled model (PyTorch, ONNX Runtime fp32/fp16/int8, TensorRT engines)"
"$BIN/rmpe-bench" parity $(plans bundled) --out-json "$OUT/parity-bundled.json" --out-png "$OUT/parity-bundled.png" || true
echo "== parity: SimplePose (random weights: keypoint differences, not AP, are the measure)"
"$BIN/rmpe-bench" parity --checkpoint "$OUT/simplepose.pth" $(plans simplepose) \
    --out-json "$OUT/parity-simplepose.json" || true
echo "== latency: bundled model"
"$BIN/rmpe-bench" latency $(plans bundled) --batch 1,8,32 --image-size 640x480,1920x1080 \
    --out-json "$OUT/latency-bundled.json" --out-png "$OUT/latency-bundled.png"
echo "== latency: SimplePose"
"$BIN/rmpe-bench" latency --checkpoint "$OUT/simplepose.pth" $(plans simplepose) --batch 1,8,32 \
    --out-json "$OUT/latency-simplepose.json"
echo "gpu_check: done; files in $OUT"
