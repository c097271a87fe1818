#!/usr/bin/env bash
# One prepared GPU session for issue 7 (docs/training.md): the CUDA tests of the losses and
# training paradigms, then the label-scarcity comparison on pulp segmentation (`ci`
# synthetic profile) under short per-arm GPU budgets. Logs and JSON under $OUT.
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_paradigms
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== CUDA tests"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_paradigms.py \
  tests/test_losses.py -k cuda 2>&1 | tail -8 | tee "$OUT/cuda_tests.log"
MINUTES=${MINUTES:-1.2}
echo "== label scarcity, segmentation, $MINUTES min per arm"
timeout ${LIMIT:-330} python3 benchmarks/label_scarcity.py --task segmentation --size 40 \
  --minutes "$MINUTES" --pretrain-minutes 1 --arms ${ARMS:-sup,semi,pretrain,full} \
  --threads 8 --work /tmp/ls constraints.device=cuda 2>&1 | grep -v "^  next\|^run folder" \
  | tail -30 | tee "$OUT/label_scarcity.log"
cp /tmp/ls/label_scarcity_*.json "$OUT/" 2>/dev/null
exit 0
