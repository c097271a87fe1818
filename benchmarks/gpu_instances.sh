#!/usr/bin/env bash
# One prepared GPU session for instance segmentation: the two FDI templates trained on the
# `ci` synthetic profile under a short time budget, evaluated on held-out patients
# (benchmarks/instance_quality.py), to compare with the CPU figures in docs/instances.md.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_instances}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
MINUTES=${MINUTES:-2}
for template in teeth-fdi-cbct pulp-instances-cbct; do
  echo "== $template, $MINUTES min budget"
  timeout 270 python3 benchmarks/instance_quality.py --template "$template" --cases 40 \
    --minutes "$MINUTES" --work /tmp/iq 2>&1 | tail -60 | tee "$OUT/$template.log"
  find /tmp/iq/runs -path "*$template*" -name instance_quality.json -exec cp {} "$OUT/$template.json" \;
done
