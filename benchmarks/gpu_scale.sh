#!/usr/bin/env bash
# The second prepared GPU session (see docs/performance.md), for what gpu_check.sh left
# open: the fraction of the bf16 peak at the sizes `dentpy plan` picks on CUDA and which
# compute settings win there (gpu_peak.py), the planner's memory model against
# torch.cuda.max_memory_allocated (plan_memory.py), an end-to-end `dentpy train` with
# every size and the iterations "auto" on the GPU, GPU inference per volume vs the MONAI
# tutorial, and the data-path throughput at the planned size vs the MONAI reference.
# Each step has its own time limit and logs to $OUT. All five take ~11 minutes on an H100,
# more than one device call: run them in two calls, e.g. STEPS="1 2" then STEPS="3 4 5"
# (on 2026-11-27 one call of all five hit the limits of steps 1, 2 and 4; see
# docs/performance.md for what was rerun).
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_scale
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
step() { echo "== $1 ($(date +%T))"; }
dentpy=(python3 -c "import sys; from dentpy.cli import main; sys.argv=['dentpy', *sys.argv[1:]]; main()")
# Sizes, overridable for a dry run of this script on a CPU.
PEAK_CONFIGS=${PEAK_CONFIGS:-unet:32,64,128,256,320:144x112x80:2 unet:16,32,64,128:96:2 \
basic_unet:32,64,128,256,320:128:2 basic_unet:32,64,128,256,320:128:4}
PLANNED_PATCH=${PLANNED_PATCH:-144,112,80}
PLANNED_CHANNELS=${PLANNED_CHANNELS:-32,64,128,256,320}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-1 2 3 4 5}
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want 1; then
step "1. bf16 peak and compute settings (gpu_peak.py)"
# shellcheck disable=SC2086  # the configs are words
timeout 240 python3 benchmarks/gpu_peak.py --steps 15 --configs $PEAK_CONFIGS 2>&1 | tee "$OUT/gpu_peak.txt"
fi

if want 2; then
step "2. planner memory estimate vs torch.cuda.max_memory_allocated"
timeout 120 python3 benchmarks/plan_memory.py --profile cbct-like --device "$DEVICE" --limits 2 8 \
  2>&1 | tee "$OUT/plan_memory.txt"
fi

work=/tmp/gpu_scale_e2e
if want 3; then
step "3. end-to-end: dentpy train with every size and the iterations auto, 1-minute budget"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
export DENTPY_CACHE=$work/cache
"${dentpy[@]}" synth cbct --out data --cases 16 --test-cases 4 --profile ci >/dev/null
"${dentpy[@]}" init --template pulp-cbct --data data/Dataset001_SynthCBCT --out spec.yaml >/dev/null
timeout 150 "${dentpy[@]}" train spec.yaml train.patch_size=auto train.batch_size=auto model.channels=auto \
  train.iterations=auto constraints.time_budget_minutes=1 --runs runs --no-progress \
  >"$OUT/e2e_train.log" 2>&1
echo "train exit $?"; tail -5 "$OUT/e2e_train.log"
run=$(find runs -mindepth 1 -maxdepth 1 -type d | head -1)
timeout 90 "${dentpy[@]}" evaluate "$run" 2>&1 | tail -8
python3 - "$run" <<'EOF' | tee "$OUT/e2e_summary.json"
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
plan = json.loads((run / "plan.json").read_text())
summary = json.loads((run / "train_summary.json").read_text())
test = run / "evaluation" / "test" / "summary.json"
dice = json.loads(test.read_text())["model"][0]["dice_mean"] if test.exists() else None
summary.pop("imbalance", None)
print(json.dumps({"plan": plan["auto_plan"], "train_summary": summary, "test_dice": dice}))
EOF
cd - >/dev/null || exit 1
fi

if want 4; then
step "4. inference per volume on the GPU: dentpy (auto window, patch windows) vs MONAI"
timeout 200 python3 benchmarks/inference_time.py --run "$work/runs/pulp-cbct" \
  --repeats 2 --threads 8 2>&1 | tee "$OUT/inference_time.txt" | tail -8
fi

if want 5; then
step "5. data path + step at the planned size, dentpy vs the MONAI reference (bf16 both)"
timeout 150 python3 benchmarks/train_step.py --device "$DEVICE" --profile ci \
  --patch "$PLANNED_PATCH" --channels "$PLANNED_CHANNELS" --batch 2 --bf16 --steps 15 --repeats 2 --arms monai,dentpy \
  2>&1 | tee "$OUT/train_step_planned.txt" | tail -4
fi
step "done"
