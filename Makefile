# Two entry points for a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
# CPU torch by default; GPU users: make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := out

.PHONY: demo test install clean train-default

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[train,bench,dev,video,ray]'
	$(BIN)/python -m rmpe.export.trt_api --fetch  # TensorRT 10 and 11 bindings wheels for the API check (tests/test_trt_api.py)
	if command -v npm >/dev/null; then npm ci --ignore-scripts --prefix examples/node --silent; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rmpe-data synth --out $(OUT)/samples --images 8 --seed 20261125
	$(BIN)/rmpe-export --out $(OUT)/model
	$(BIN)/rmpe-run $(OUT)/model/model.onnx $(OUT)/samples/images --boxes $(OUT)/samples/detections.json \
		--out $(OUT)/results.json --save-img $(OUT)/vis
	@echo "drawings: $(OUT)/vis/   results: $(OUT)/results.json"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(OUT)

# Re-make the bundled default model (about an hour on 2 CPU cores); see README "The default model".
train-default: $(STAMP)
	$(BIN)/rmpe-data synth --out data/train --images 4000 --seed 1 --workers 2
	$(BIN)/rmpe-data pgpg --keypoints data/train/person_keypoints.json --detections data/train/detections.json --out data/pgpg.npz
	$(BIN)/rmpe-train --data data/train --pgpg data/pgpg.npz --out runs/default --minutes 55 --batch 8 --stn-fraction 0.1 --bundle
