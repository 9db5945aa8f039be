#!/usr/bin/env bash
# The GPU proof on a lent device machine (one NVIDIA GPU, its own python3 with torch and CUDA,
# nothing reachable from it), prepared here so that the device time goes to the measurement.
#
#   here:    bash bench/gpu_device.sh prepare     # .device/: the SPY CSV, pinned wheels, a root with a champion
#   device:  bash bench/gpu_device.sh check       # bench/gpu_check.py: CPU vs CUDA fp32 vs CUDA bf16 -> $OUT
#   device:  bash bench/gpu_device.sh pool        # bench/gpu_pool_check.py: the retrain deployment on a gpu-pool worker -> $OUT
#   device:  bash bench/gpu_device.sh all         # check, then pool (one call: ~6 min on an H200 and 16 cores)
#   here:    bash bench/gpu_device.sh stand-in    # both, every "CUDA" run on this CPU: checks the scripts, proves nothing about CUDA
#
# Each device call carries `.device` (ignored by git), runs from the repository root and names
# the commit it runs (no .git travels): run(command="SPYWATCH_GIT=<sha> bash bench/gpu_device.sh
# all", carry=[".device"], timeout_s=480); the results come back under $OUT, to commit in
# bench/results/. `check` needs the pinned pandas (the image's may be another major version);
# `pool` needs Prefect and what it depends on that the image lacks. What the image provides is
# named in IMAGE below (its package list as read on 2026-11-17); everything else travels as wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.device
AS_OF=2021-12-31   # the session the prepared root's champion was trained for, and the retrain's
PY=${PYTHON:-python3}

install_wheels() {  # $1: the wheel folders to install, into /tmp/site, ahead of the image's packages
    for d in "$@"; do
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$DEV/$d"/*.whl
    done
    export PYTHONPATH=/tmp/site:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
}

case "${1:-}" in
prepare)
    venv=.venv/bin/python
    pandas=$($venv -c 'import pandas; print(pandas.__version__)')
    prefect=$($venv -c 'import prefect; print(prefect.__version__)')
    target=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
            --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
            --platform manylinux1_x86_64 --platform any)
    rm -rf "$DEV" && mkdir -p "$DEV/core" "$DEV/prefect"
    cp data/spy_daily.csv "$DEV/"
    $venv -m pip download -q --no-deps "${target[@]}" -d "$DEV/core" "pandas==$pandas" pytz tzdata
    $venv -m pip download -q "${target[@]}" -d "$DEV/prefect" "prefect==$prefect"
    # What the device image has already (its package list), left out so the carried tree stays under 64 MiB;
    # the command-line stack (click, typer, rich, anyio, httpx) travels pinned all the same.
    IMAGE="annotated_doc attrs certifi charset_normalizer cloudpickle colorama fsspec humanize idna jinja2 markdown
           markdown_it_py markupsafe mdurl packaging pathspec pluggy prometheus_client pygments python_dateutil
           pyyaml regex requests shellingham six typing_extensions urllib3 numpy pandas pytz tzdata"
    for w in "$DEV"/prefect/*.whl; do
        name=$(basename "$w" | cut -d- -f1 | tr 'A-Z.-' 'a-z__')
        for skip in $IMAGE; do [ "$name" = "$skip" ] && rm "$w" && break; done
    done
    # a root with the default champion trained for AS_OF on the real data: what the retrain gates against
    $venv -m spywatch.cli run --no-prefect --source "csv:$DEV/spy_daily.csv" --as-of "$AS_OF" --root "$DEV/root" \
        >"$DEV/prepare.log" 2>&1 || { tail -20 "$DEV/prepare.log"; exit 1; }
    rm -rf "$DEV/root/published" "$DEV/root/cache"  # what a retrain does not read (12 MB of the night's outputs)
    du -sh "$DEV" "$DEV"/*
    echo "carried with the tree: $(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb "$DEV" | cut -f1)) / 1048576 )) MiB (limit 64)"
    ;;
check)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    install_wheels core
    PYTHONUNBUFFERED=1 "$PY" bench/gpu_check.py --data "$DEV/spy_daily.csv" --out "${OUT:-bench/results}/gpu_check" \
        "${@:2}"
    ;;
pool)
    install_wheels core prefect
    PYTHONUNBUFFERED=1 "$PY" bench/gpu_pool_check.py --root "$DEV/root" --as-of "$AS_OF" \
        --source "csv:$DEV/spy_daily.csv" --out "${OUT:-bench/results}/gpu_pool" "${@:2}"
    ;;
all)
    rc=0
    bash "$0" check || rc=$?
    bash "$0" pool || rc=$?
    exit $rc
    ;;
stand-in)
    export PYTHONPATH=$PWD/src:$PWD
    PY=.venv/bin/python
    PATH=$PWD/.venv/bin:$PATH "$PY" bench/gpu_check.py --stand-in --epochs 1 --data "$DEV/spy_daily.csv" "${@:2}"
    rm -rf bench/out/gpu_pool_root && cp -r "$DEV/root" bench/out/gpu_pool_root  # the pool check writes into its root
    PATH=$PWD/.venv/bin:$PATH "$PY" bench/gpu_pool_check.py --stand-in --root bench/out/gpu_pool_root --as-of "$AS_OF" \
        --source "csv:$DEV/spy_daily.csv" --out bench/out/gpu_pool_stand_in --max-epochs 1 "${@:2}"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
