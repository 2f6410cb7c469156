#!/bin/bash
# The checks a lent GPU machine is for, in one call (docs/BENCHMARKS.md, "GPU"):
#   1. the CUDA tests (tests/cuda: model, device recipe and a training run against the CPU);
#   2. MViTv2-B 32x3 at 224: clips/s and peak memory per clip, SDPA vs reference attention,
#      bf16 and fp32, with and without activation checkpointing, and without
#      CUDNN_BENCHMARK;
#   3. the device-side recipe's share of a training step (tools/benchmark.py recipe --step);
#   4. one loader worker against the PIL pipeline on that machine's CPU;
#   5. the training step with each speed option (benchmarks/levers_speed.py: clips/s,
#      GB/clip, MFU), their CUDA tests (tests/cuda/test_cuda_levers.py), and end-to-end
#      run_net training on generated 320p videos, options off and on, with the loader wait
#      per step (benchmarks/train_e2e.py);
#   6. multi-view test loading, per view vs per video, on that machine's CPU.
# ONLY="name ..." runs only those steps (names as printed: cuda_tests, model_bf16, ...,
# levers_tests, levers, e2e_plain, e2e_levers, eval_decode); each step is time-limited.
# Python packages the machine lacks are installed from wheels in .whl/ if present
# (docs/BENCHMARKS.md says which and how to fetch them).
# Logs and JSON go to $OUT (default /tmp/device_checks). ITEMS=N samples per worker pipeline
# in step 3 (default 10); LOADER_VIDEOS=0 skips step 4.
set -u
OUT=${OUT:-/tmp/device_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
fi
# This checkout's multitrain (not installed there) for tools/ and the tests' child processes.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step NAME SECONDS CMD...: run with a limit, log to $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? in $((SECONDS - t0)) s"
    tail -n "${TAIL:-20}" "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, decord, av; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'decord', decord.__version__, 'av', av.__version__)"
nproc
B="-m benchmarks.model_speed"
TAIL=14 step cuda_tests 150 python3 -m pytest tests/cuda -m cuda -q -s -p no:cacheprovider \
    --ignore=tests/cuda/test_cuda_levers.py
TAIL=6 step model_bf16 100 python3 $B --device cuda --amp bf16 --frames 32 --crop 224 --batch 8 \
    --iters 4 --repeats 1 --json "$OUT/model_bf16.json"
TAIL=5 step model_bf16_cudnn_default 60 python3 $B --device cuda --amp bf16 --frames 32 \
    --crop 224 --batch 8 --iters 4 --repeats 1 --impls sdpa --json "$OUT/model_bf16_nobench.json" \
    CUDNN_BENCHMARK False
TAIL=6 step model_fp32 80 python3 $B --device cuda --frames 32 --crop 224 --batch 4 \
    --iters 3 --repeats 1 --json "$OUT/model_fp32.json"
TAIL=5 step model_ckpt 60 python3 $B --device cuda --amp bf16 --frames 32 --crop 224 --batch 8 \
    --iters 3 --repeats 1 --impls sdpa --act-checkpoint --json "$OUT/model_ckpt.json"
TAIL=30 step recipe 110 python3 tools/benchmark.py recipe --device cuda --batch 8 --step \
    --items ${ITEMS:-10} --json "$OUT/recipe.json"
TAIL=14 step levers_tests 300 python3 -m pytest tests/cuda/test_cuda_levers.py -m cuda -q -s \
    -p no:cacheprovider
TAIL=10 step levers 240 python3 -m benchmarks.levers_speed --batch 8 --iters 5 --json "$OUT/levers.json"
E2E="--videos ${E2E_VIDEOS:-192} --data /tmp/e2e_corpus --timeout 190"
TAIL=3 step e2e_plain 200 python3 -m benchmarks.train_e2e $E2E --json "$OUT/e2e_plain.json" \
    MODEL.POOL_CHANNELS_LAST False SOLVER.FUSED_ADAMW False
TAIL=3 step e2e_levers 200 python3 -m benchmarks.train_e2e $E2E --json "$OUT/e2e_levers.json" \
    MODEL.COMPILE True
TAIL=12 step eval_decode 150 python3 -m benchmarks.eval_decode_speed --videos 16 --workers 1 \
    --json "$OUT/eval_decode.json"
if [ "${LOADER_VIDEOS:-16}" -gt 0 ]; then
    TAIL=16 step loader 80 python3 tools/benchmark.py loader --videos "${LOADER_VIDEOS:-16}" \
        --json "$OUT/loader.json"
fi
