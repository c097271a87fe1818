# Sourced by the benchmarks/gpu_*.sh scripts: installs dentpy's dependencies that the GPU
# image lacks from the wheels in .whl/ (pip download; carried to the device) into
# /tmp/site, puts them and src/ on PYTHONPATH, and makes $OUT (default: $1).
OUT=${OUT:-$1}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
