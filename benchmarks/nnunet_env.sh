#!/usr/bin/env bash
# nnU-Net v2 in a virtual environment of its own (default /tmp/nnenv), for
# benchmarks/nnunet_time_to_quality.py. nnU-Net itself accepts the CPU torch 2.13.0 dentpy
# uses, but pip would also pull torchvision (timm, through dynamic-network-architectures),
# which is not usable with the CPU torch and downloads a CUDA build. So: torch pinned first,
# then nnU-Net and every dependency pip resolves for it, except torchvision, with --no-deps.
# nnU-Net's training and prediction do not import torchvision.
set -euo pipefail
ENV=${1:-/tmp/nnenv}
python3 -m venv "$ENV"
"$ENV/bin/pip" install -q torch==2.13.0
echo "torch==2.13.0" > "$ENV/constraints.txt"
PACKAGES=$("$ENV/bin/pip" install --dry-run nnunetv2 -c "$ENV/constraints.txt" 2>/dev/null \
    | sed -n 's/^Would install //p' | tr ' ' '\n' | grep -v '^torchvision-' \
    | sed -E 's/-([0-9][^-]*)$/==\1/')
# shellcheck disable=SC2086
"$ENV/bin/pip" install -q --no-deps $PACKAGES
"$ENV/bin/python" -c "import nnunetv2, torch; print('nnU-Net v2 with torch', torch.__version__)"
