#!/usr/bin/env bash
# One prepared GPU session for instance segmentation: the two FDI templates trained on the
# `ci` synthetic profile under a short time budget, evaluated on held-out patients
# (benchmarks/instance_quality.py), to compare with the CPU figures in docs/instances.md.
set -uo pipefail
source benchmarks/gpu_env.sh /tmp/gpu_instances
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
MINUTES=${MINUTES:-2}
for template in teeth-fdi-cbct pulp-instances-cbct; do
  echo "== $template, $MINUTES min budget"
  timeout 270 python3 benchmarks/instance_quality.py --template "$template" --cases 40 \
    --minutes "$MINUTES" --work /tmp/iq 2>&1 | tail -60 | tee "$OUT/$template.log"
  find /tmp/iq/runs -path "*$template*" -name instance_quality.json -exec cp {} "$OUT/$template.json" \;
done
