#!/usr/bin/env bash
# One prepared GPU session for detection: the two box templates on synthetic X-rays under
# a short time budget (benchmarks/detection_quality.py), to compare with the CPU figures.
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_detection
# Synthesis runs in one process (~0.25 s per image), so the image counts stay small.
MINUTES=${MINUTES:-1.5}
timeout 280 python3 benchmarks/detection_quality.py --template caries-boxes --kind bitewing \
  --images 200 --minutes "$MINUTES" --work /tmp/dq 2>&1 | tail -40 | tee "$OUT/caries-boxes.log"
timeout 280 python3 benchmarks/detection_quality.py --template teeth-boxes --kind panoramic \
  --images 120 --minutes "$MINUTES" --work /tmp/dq 2>&1 | tail -60 | tee "$OUT/teeth-boxes.log"
find /tmp/dq/runs -name "*.png" -path "*evaluation*" | while read -r f; do
  cp "$f" "$OUT/$(basename "$(dirname "$(dirname "$(dirname "$f")")")")_$(basename "$f")"; done
