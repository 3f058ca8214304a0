#!/usr/bin/env bash
# The GPU run, on a machine with a CUDA GPU, Python 3.12 and torch but no network.
# Here first (PyPI reachable):   bash bench/gpu/fetch_wheels.sh    -> .whl/ (git-ignored)
# There, from the repository root, with .whl carried along:   bash bench/gpu/run.sh
# It installs the wheels into $SITE (pip --no-index --target), then measures for at most
# 8 minutes and writes <gpu-kind>.json into $OUT (the device tool's return folder) or, without
# $OUT, into bench/results/. Extra arguments go to python -m bench.gpu.measure.
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import dask, distributed, odc.stac, rasterio, zarr, torch; print('imports ok; torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 480 "$PY" -m bench.gpu.measure --out "${OUT:-bench/results}" "$@"
