#!/usr/bin/env bash
# One prepared GPU session (see docs/performance.md): the CUDA test, the demo on the GPU,
# and the training-throughput benchmark against the MONAI reference on the same card.
# Expects dentpy's dependencies that the GPU image lacks as wheels in .whl/ (pip download).
# Writes logs and the demo's pictures under $OUT.
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_check
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"
echo "== 1. CUDA test"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15
echo "== 2. demo on the GPU"
start=$(date +%s)
timeout 240 python3 -c "import sys; from dentpy.cli import main; sys.argv=['dentpy','demo','--out','$OUT/demo','--minutes','3']; main()" >"$OUT/demo.log" 2>&1
echo "demo exit $? in $(( $(date +%s) - start )) s"
tail -40 "$OUT/demo.log"
cp "$OUT"/demo/runs/*/evaluation/test/summary.json "$OUT/demo_summary.json" 2>/dev/null
find "$OUT/demo" -name "*.png" | head -2 | while read -r f; do cp "$f" "$OUT/$(basename "$f")"; done
echo "== 2b. inference per volume on the GPU: dentpy (auto window, patch windows) vs MONAI tutorial"
run=$(find "$OUT/demo/runs" -mindepth 1 -maxdepth 1 -type d | head -1)
[ -n "$run" ] && timeout 150 python3 benchmarks/inference_time.py --run "$run" --repeats 2 2>&1 | tail -6
rm -rf "$OUT/demo"
echo "== 3. training throughput, dentpy vs MONAI reference, same GPU"
timeout 100 python3 benchmarks/train_step.py --profile ci --steps 20 --repeats 3 --patch 96 --batch 2 2>&1 | tail -4
timeout 100 python3 benchmarks/train_step.py --profile ci --steps 20 --repeats 3 --patch 96 --batch 2 --bf16 --arms monai,dentpy 2>&1 | tee "$OUT/train_step_bf16.txt" | tail -4
echo "== 4. fraction of the GPU's dense bf16 peak reached by dentpy's training step (counted FLOPs)"
rate=$(awk '/^dentpy/ {print $3}' "$OUT/train_step_bf16.txt")
[ -n "$rate" ] && timeout 60 python3 benchmarks/step_flops.py --patch 96 --batch 2 --samples-per-s "$rate"
# TorchIO is not on the GPU image: with .whl/ holding its wheel, add --arms monai,torchio,dentpy.
