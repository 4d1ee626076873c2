#!/usr/bin/env bash
# What a lent GPU machine runs (see the README's Benchmarks): the GPU overhead
# benchmark, then the PyTorch live-doctor tests on CUDA (and Keras' torch backend's,
# when its wheels are carried in .whl/). Uses the machine's own python3 and torch;
# logs and results go to $OUT. About 5 minutes on an H200.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/benchmarks:$PWD"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.txt" 2>&1 \
    || echo "editable install failed (PYTHONPATH used): $(tail -1 "$OUT/install.txt")"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total \
    --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__)" \
    | tee -a "$OUT/gpu.txt"
bench() { timeout "$1" python3 benchmarks/bench_live_overhead_gpu.py \
    --json "$OUT/bench.jsonl" ${BENCH_EXTRA:-} "${@:2}" 2>&1 | tee -a "$OUT/bench.txt"; }
bench 110 --runs 2 --epochs 12 --epoch-seconds 1.5
LOSSDOCTOR_TEST_DEVICE="${TEST_DEVICE:-cuda}" timeout 70 python3 -m pytest -q -x \
    -p no:cacheprovider tests/live/test_torch_live.py tests/live/test_torch_batchnorm.py \
    tests/live/test_torch_histograms.py >"$OUT/pytest.txt" 2>&1
echo "pytest on cuda: exit $? ($(tail -1 "$OUT/pytest.txt"))"
bench 80 --runs 2 --epochs 8 --epoch-seconds 1.5 --item-every-step
bench 45 --runs 1 --epochs 8 --every-step
if ls .whl/keras-*.whl >/dev/null 2>&1; then  # Keras (torch backend) on CUDA, when carried
    python3 -m pip install -q --no-index --no-deps .whl/*.whl >>"$OUT/install.txt" 2>&1
    KERAS_BACKEND=torch timeout 50 python3 -m pytest -q -x -p no:cacheprovider \
        tests/live/test_keras_torch_backend.py >"$OUT/pytest_keras.txt" 2>&1
    echo "keras (torch backend) tests: exit $? ($(tail -1 "$OUT/pytest_keras.txt"))"
fi
