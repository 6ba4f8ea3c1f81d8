#!/usr/bin/env bash
# One device lease, one command (issue 14's GPU part; the lease is minutes, so everything runs at once):
#   1. build the C helpers for the machine's own python;
#   2. in the background, pinned one run per CPU to the last 6 CPUs: the recipe benchmark at the quick
#      start's budget (benchmarks/bench_recipe.py --parallel 6: 3 recipes x 2 seeds, all at the same time);
#   3. pinned to the other CPUs: `make bench-gpu` (model and training benchmarks, the CUDA tests), then
#      the TinyStories configuration with --recipe cs336 and tinylm (benchmarks/bench_tinystories.py).
# Everything it prints and writes lands in $OUT. Data: a `bench_tinystories.py prepare` folder in
# data/device/ (train.npy.xz: xz-compressed to travel), carried with the working tree.
#   run (device): bash tools/device_session.sh        locally, as a smoke test: SMOKE=1 bash tools/device_session.sh
set -u
OUT=${OUT:-out/device}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RECIPE_MINUTES=${RECIPE_MINUTES:-7.5}
TS_TOKENS=${TS_TOKENS:-32768000}
DEVICE=cuda; COMPILE=--compile; MAKE_GPU=1
if [ "${SMOKE:-0}" = 1 ]; then RECIPE_MINUTES=0.1; TS_TOKENS=16384; DEVICE=cpu; COMPILE=; MAKE_GPU=0; fi
ncpu=$(nproc)
if [ "$ncpu" -ge 12 ]; then GPU_CPUS="0-$((ncpu - 7))"; RECIPE_CPUS="$((ncpu - 6))-$((ncpu - 1))"; PAR=6
else GPU_CPUS="0-$((ncpu - 1))"; RECIPE_CPUS="0-$((ncpu - 1))"; PAR=$ncpu; fi
pin() { if command -v taskset >/dev/null; then taskset -c "$GPU_CPUS" "$@"; else "$@"; fi; }
stage() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }

stage "machine"; nproc; free -g | head -2; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
$PY -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
stage "build C helpers"; $PY setup.py build_ext --inplace -q 2>&1 | tail -3
$PY -c "from tinylm.tokenizer import _native; print('native:', _native.__dict__.get('BACKENDS', 'loaded'))" 2>&1 | tail -1
xz -dc data/device/train.npy.xz > data/device/train.npy || exit 1

stage "recipe benchmark (background): $RECIPE_MINUTES min, parallel $PAR on CPUs $RECIPE_CPUS"
$PY benchmarks/bench_recipe.py --minutes "$RECIPE_MINUTES" --seeds 0 1 --parallel "$PAR" --cpus "$RECIPE_CPUS" \
    --work /tmp/bench_recipe --out "$OUT/bench_recipe.json" --plot "$OUT/recipe_bpb_vs_time.png" > "$OUT/bench_recipe.log" 2>&1 &
RECIPE_PID=$!

if [ "$MAKE_GPU" = 1 ]; then
  stage "make bench-gpu (CPUs $GPU_CPUS)"
  touch .device-stamp
  pin timeout 240 make bench-gpu PY="$PY" STAMP=.device-stamp 2>&1
  echo "make bench-gpu exit $?"
fi
stage "TinyStories configuration, $TS_TOKENS tokens per recipe"
pin timeout 300 $PY benchmarks/bench_tinystories.py train --data data/device --device "$DEVICE" $COMPILE \
    --tokens "$TS_TOKENS" --recipes cs336 tinylm --out /tmp/tinystories --json "$OUT/tinystories.json" 2>&1 | grep -v Warning
stage "waiting for the recipe benchmark"
wait "$RECIPE_PID"; echo "recipe benchmark exit $?"
cat "$OUT/bench_recipe.log"
stage "done"
