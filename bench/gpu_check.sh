#!/usr/bin/env bash
# The GPU check of issue 13 item 6: at most 8 minutes on one H200 (16 cores), run from the repo
# root. Fill gpu_data/ and gpu_wheels/ here first (bash bench/gpu_prepare.sh), then on the device
# machine, carrying ["gpu_data", "gpu_wheels"]:
#
#   bash bench/gpu_check.sh                 # results in $OUT (default ./gpu_out)
#
# Steps, in order, each under its own timeout and the whole under GPU_CHECK_BUDGET seconds; a
# failed or timed-out step is recorded and the next one runs:
#   env          nvidia-smi, torch and CUDA versions; imports of the carried packages
#   cuda-tests   pytest -m cuda tests, but the README commands (CUDA against CPU, Dask GPU workers)
#   topk-c1000   bench_topk.py --device cuda --classes 1000 --size 224 --points 2
#   vit-b16      bench_vit_b16.py --device cuda (ViT-B/16 224², C = 1000: top-10, trace, bf16)
#   dim-c10      bench_dim.py --device cuda (LeNet 256 points; ResNet-18 224², C = 10)
#   brackets     bench_brackets.py --device cuda (paper CNN, 20 points)
#   nnk          bench_nnk.py --device cuda (60k MNIST, k = 50)
#   cuda-cli     the README's commands with --device cuda (tests/test_cuda.py), if time is left
#   nnk-index    bench_nnk_index.py --device cuda (flat / IVF / HNSW), if time is left
#   full-suite   the whole test suite on the GPU machine (default --device auto = cuda there),
#                if time is left
# Writes $OUT/gpu_table.md (one table: pass/fail counts, each benchmark's headline numbers),
# $OUT/gpu_logs.tar.gz (every raw log and JSON) and $OUT/gpu_steps.tsv.
#
# Environment:
#   GPU_CHECK_DEVICE=cuda|cpu  cpu: a dry run on a machine without a GPU, tiny sizes (default cuda)
#   GPU_CHECK_BUDGET=SECONDS   wall-clock budget of all steps (default 450)
#   GPU_CHECK_PYTHON=PATH      interpreter (default python3); missing packages are installed from
#                              gpu_wheels/ into GPU_CHECK_SITE (default /tmp/leafscope-gpu-site),
#                              an overlay reused by later runs (a venv made from the image's own
#                              venv would lose its torch)
#   GPU_CHECK_FULL=0|1         run the full suite when time is left (default 1 on cuda, 0 on cpu)
set -u -o pipefail

START=$(date +%s)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET:-450}
PY=${GPU_CHECK_PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/leafscope-gpu-site}
OUT=${OUT:-$PWD/gpu_out}
if [ "$DEVICE" = cuda ]; then FULL=${GPU_CHECK_FULL:-1}; else FULL=${GPU_CHECK_FULL:-0}; fi
case "$DEVICE" in cuda | cpu) ;; *) echo "GPU_CHECK_DEVICE must be cuda or cpu (got $DEVICE)" >&2; exit 2 ;; esac
[ -f bench/gpu_check.sh ] || { echo "run from the repository root: bash bench/gpu_check.sh" >&2; exit 2; }

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
STEPS=$WORK/steps.tsv
: >"$STEPS"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
[ -d gpu_data ] && export LEAFSCOPE_DATA=$PWD/gpu_data
# tests that need the shared data look for ../shared/data: point it at gpu_data on a bare machine
if [ -d gpu_data ] && [ ! -e ../shared/data ]; then
  mkdir -p ../shared && ln -s "$PWD/gpu_data" ../shared/data
fi

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME CAP_SECONDS MIN_SECONDS CMD...: run CMD under min(CAP, time left - 15 s), log to
# $WORK/NAME.log, record "name status rc seconds" (status ok | failed | timeout | skipped).
step() {
  local name=$1 cap=$2 need=$3
  shift 3
  local avail=$(($(left) - 15)) t0 rc status
  if [ "$avail" -lt "$need" ]; then
    printf '%s\tskipped\t-\t0\n' "$name" >>"$STEPS"
    echo "== $name: skipped ($avail s left, needs $need)"
    return 0
  fi
  [ "$cap" -gt "$avail" ] && cap=$avail
  echo "== $name (timeout ${cap} s): $*"
  t0=$(date +%s)
  timeout -k 10 "$cap" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(($(date +%s) - t0))" >>"$STEPS"
  echo "   $status (rc $rc, $(($(date +%s) - t0)) s)"
  tail -n 3 "$WORK/$name.log" | sed 's/^/   | /'
}

finish() {
  "$PY" bench/gpu_table.py --work "$WORK" --device "$DEVICE" --out "$OUT/gpu_table.md" \
    >"$WORK/table.log" 2>&1 || {
    { echo "# GPU check ($DEVICE): table builder failed, raw step list"; echo
      echo '| step | status | rc | seconds |'; echo '|---|---|---|---|'
      awk -F'\t' '{print "| "$1" | "$2" | "$3" | "$4" |"}' "$STEPS"; } >"$OUT/gpu_table.md"
  }
  cp "$STEPS" "$OUT/gpu_steps.tsv"
  tar -czf "$OUT/gpu_logs.tar.gz" -C "$WORK" . 2>/dev/null
  echo "== done in $(($(date +%s) - START)) s: $OUT/gpu_table.md"
  cat "$OUT/gpu_table.md"
}
trap finish EXIT

# ---------------------------------------------------------------- environment and packages
if ! PYTHONPATH=$PWD "$PY" -c "import faiss, pywt, distributed" >/dev/null 2>&1; then
  if [ -d gpu_wheels ]; then
    if ! PYTHONPATH=$SITE "$PY" -c "import faiss, pywt, distributed" >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" gpu_wheels/*.whl >"$WORK/pip.log" 2>&1 || echo "pip install failed: see pip.log"
    fi
    export PYTHONPATH=$SITE:$PWD
  fi
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD

env_info() {
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
  "$PY" - <<'EOF'
import importlib
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
for name in ("numpy", "faiss", "pywt", "dask", "distributed", "pyarrow", "leafscope"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
    except Exception as exc:  # report every missing package, then go on
        print(name, "MISSING", exc)
EOF
}
export PY
export -f env_info
step env 60 5 bash -c env_info

# ---------------------------------------------------------------- sizes (cpu: a dry run)
if [ "$DEVICE" = cuda ]; then
  DIM=(--points 256 --dense-points 32)
  TOPK=(--classes 1000 --size 224 --points 2)
  BRACKETS=(--model cnn --points 20 --full-points 1)
  NNK=(--n 60000 --k 50 --sample 500 --propagation-n 10000)
  NNKI=(--n 60000 --k 15)
  VITB=(--points 2 --probes 64 --exact-points 1)
else
  DIM=(--points 16 --dense-points 2)
  TOPK=(--classes 10 --size 32 --points 1 --regimes flat)
  BRACKETS=(--model lenet --points 1 --full-points 1)
  NNK=(--n 2000 --k 10 --sample 50 --propagation-n 0)
  NNKI=(--n 2000 --k 10)
  VITB=(--points 1 --probes 4 --classes 10 --size 32 --k 3)
fi
J=$WORK

# ---------------------------------------------------------------- the steps, by priority
step cuda-tests 150 30 "$PY" -m pytest -m cuda tests -k "not readme_command" -q -rfEs \
  -p no:cacheprovider --junitxml="$J/cuda-tests.xml"
step topk-c1000 200 60 "$PY" bench/bench_topk.py --device "$DEVICE" "${TOPK[@]}"
step vit-b16 240 60 "$PY" bench/bench_vit_b16.py --device "$DEVICE" "${VITB[@]}"
step dim-c10 120 30 "$PY" bench/bench_dim.py --device "$DEVICE" "${DIM[@]}" --json "$J/dim.json"
step brackets 90 20 "$PY" bench/bench_brackets.py --device "$DEVICE" "${BRACKETS[@]}" \
  --json "$J/brackets.json"
step nnk 120 40 "$PY" bench/bench_nnk.py --device "$DEVICE" "${NNK[@]}" --json "$J/nnk.json"
step cuda-cli 240 60 "$PY" -m pytest -m cuda tests/test_cuda.py -k readme_command -q -rfEs \
  -p no:cacheprovider --durations=5 --junitxml="$J/cuda-cli.xml"
step nnk-index 120 90 "$PY" bench/bench_nnk_index.py --device "$DEVICE" "${NNKI[@]}" \
  --json "$J/nnk_index.json"
if [ "$FULL" = 1 ]; then
  step full-suite 240 120 "$PY" -m pytest -q -rfE -p no:cacheprovider \
    --junitxml="$J/full-suite.xml"
fi
exit 0
