#!/usr/bin/env bash
# The next GPU session's prepared check: what no GPU session has measured yet, most
# valuable first, each step with its own time limit, ~8 minutes in all on an H100.
#   1. Is the planned UNet's step launch-bound? bf16 eager vs the whole step replayed as
#      one CUDA graph (gpu_peak.py's bf16+graph variant, benchmarks/graph_step.py), for
#      the planned UNet and BasicUNet. docs/performance.md bounds the host's share on a
#      CPU at ~12 of the 17.9 ms the H100 took.
#   2. The planner's CUDA memory factors out of sample (they were fitted on the runs of
#      2026-11-27): plan_memory.py on the cbct-like profile in bf16, CUDA's default.
#   3. Does prefetching pay off on a GPU (on 2 CPU cores it was within noise)?
#   4. End to end, every size and the iterations auto, 1-minute budget: the planner now
#      makes one untimed prediction before timing validation on CUDA (cuDNN autotuning).
# Run it as (the wheels in .whl/ as gpu_check.sh describes; $OUT comes back):
#   bash benchmarks/gpu_next.sh          # or STEPS="1 2" bash benchmarks/gpu_next.sh
# A dry run on a CPU (plumbing only, small sizes):
#   PATH=$PWD/.venv/bin:$PATH DEVICE=cpu PEAK_CONFIGS=unet:8,16:32:1 bash benchmarks/gpu_next.sh
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_next
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
step() { echo "== $1 ($(date +%T))"; }
DEVICE=${DEVICE:-cuda}
PEAK_CONFIGS=${PEAK_CONFIGS:-unet:32,64,128,256,320:144x112x80:2 basic_unet:32,64,128,256,320:128:2}
STEPS=${STEPS:-1 2 3 4}
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want 1; then
  step "1. eager bf16 vs the step as one CUDA graph (gpu_peak.py)"
  # shellcheck disable=SC2086  # the configs are words
  timeout 150 python3 benchmarks/gpu_peak.py --steps 15 --variants bf16,bf16+graph \
    --compile-configs 0 --configs $PEAK_CONFIGS 2>&1 | tee "$OUT/gpu_graph.txt"
fi

if want 2; then
  step "2. planner memory estimate vs torch.cuda.max_memory_allocated, out of sample"
  timeout 120 python3 benchmarks/plan_memory.py --profile cbct-like --device "$DEVICE" \
    --precision bf16 --limits 2 8 16 2>&1 | tee "$OUT/plan_memory.txt"
fi

if want 3; then
  step "3. prefetching on the GPU"
  timeout 120 python3 benchmarks/prefetch.py --device "$DEVICE" --profile ci \
    --iterations 60 --repeats 2 2>&1 | tee "$OUT/prefetch.txt" | tail -4
fi

if want 4; then
  step "4. end-to-end dentpy train on CUDA, everything auto, 1-minute budget"
  STEPS=3 DEVICE="$DEVICE" OUT="$OUT" bash benchmarks/gpu_scale.sh 2>&1 | tail -14
fi
step "done"
