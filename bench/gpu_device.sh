#!/usr/bin/env bash
# The GPU proof on a lent device machine (one NVIDIA GPU, its own python3 with torch and CUDA,
# nothing reachable from it), prepared here so that the device time goes to the measurement.
#
#   here:    bash bench/gpu_device.sh prepare     # .device/: a root with a champion, the carried wheels
#   here:    bash bench/gpu_device.sh stand-in    # the faithful stand-in: check and pool as the device runs them
#   device:  bash bench/gpu_device.sh check       # bench/gpu_check.py: CPU vs CUDA fp32 vs CUDA bf16 -> $OUT
#   device:  bash bench/gpu_device.sh pool        # bench/gpu_pool_check.py: the retrain deployment on a gpu-pool worker -> $OUT
#   device:  bash bench/gpu_device.sh all         # check, then pool (one call: ~6 min on an H200 and 16 cores)
#   device:  bash bench/gpu_device.sh fleet       # bench/fleet_gpu.py: the fleet in one pass, 2..500 tickers -> $OUT
#   here:    bash bench/gpu_device.sh stand-in fleet   # the same on this CPU, tiny (bench/fleet_gpu.py --stand-in)
#
# Each device call carries `.device` (ignored by git), runs from the repository root and names
# the commit it runs (no .git travels):
#   run(command="SPYWATCH_GIT=<sha> bash bench/gpu_device.sh all", carry=[".device"], timeout_s=480)
#   run(command="SPYWATCH_GIT=<sha> bash bench/gpu_device.sh fleet", carry=[".device"], timeout_s=480)
# (`fleet` keeps to its own budget, 360 s of measurement after the wheels: one call of at most 8 min)
# The results come back under $OUT, to commit in bench/results/.
#
# The carried wheels (.device/wheels, listed with their pins in .device/carried.txt) are derived by
# `prepare` from a traced run: both halves run here from .venv (their --stand-in forms) with every
# process's imports recorded (bench/device_carry.py); the distributions imported that the device
# image lacks (bench/device_image.txt, its package list as read on 2026-11-17), plus a short list
# pinned anyway (pandas, pytz, tzdata, Prefect's CLI stack), at .venv's exact versions, with no
# dependency resolution (a fresh one once picked a fastapi the server cannot import), less a few
# imported only when present (Prefect's Dask plugin, uvicorn's speed-ups: LEAVE_OUT there), pandas
# without its tests: the tree and .device must stay under the 64 MiB a device call carries.
#
# `stand-in` runs `check` and `pool` through the same branches as the device, on this CPU, with only
# the interpreter, the wheel folder and where they write changed: a bare venv of .venv's base interpreter (no site
# packages), an "image" folder of links to .venv's copies of the image's packages added to it as a
# site dir, and the same pins built for this interpreter (bench/out/standin-wheels) installed with
# `pip --target` into an empty folder. It proves nothing about CUDA; it catches what the carried
# set lacks or gets wrong: bench/standin_defects.py checks that it fails on each of the three defects
# the first GPU run found, and passes without them (bench/results/gpu_standin.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.device
AS_OF=2021-12-31   # the session the prepared root's champion was trained for, and the retrain's
DATA=data/spy_daily.csv  # tracked: travels with the tree
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-$DEV/wheels}   # the stand-in: the same pins for this interpreter
SITE=${SITE:-/tmp/site}         # where they are installed, ahead of the image's packages
ROOT=${ROOT:-$DEV/root}         # the pool check writes into its root (a device run has a fresh copy)

install_wheels() {  # the carried wheels into an empty $SITE, once per wheel set
    ls "$WHEELS" >"${TMPDIR:-/tmp}/spywatch-wheels.$$"
    if ! cmp -s "${TMPDIR:-/tmp}/spywatch-wheels.$$" "$SITE/.wheels" 2>/dev/null; then
        rm -rf "$SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
        cp "${TMPDIR:-/tmp}/spywatch-wheels.$$" "$SITE/.wheels"
    fi
    rm -f "${TMPDIR:-/tmp}/spywatch-wheels.$$"
    export PYTHONPATH=$SITE:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH
}

case "${1:-}" in
prepare)
    venv=.venv/bin/python
    target=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
            --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
            --platform manylinux1_x86_64 --platform any)
    rm -rf "$DEV" && mkdir -p "$DEV/wheels"
    # a root with the default champion trained for AS_OF on the real data: what the retrain gates against
    $venv -m spywatch.cli run --no-prefect --source "csv:$DATA" --as-of "$AS_OF" --root "$DEV/root" \
        >"$DEV/prepare.log" 2>&1 || { tail -20 "$DEV/prepare.log"; exit 1; }
    rm -rf "$DEV/root/published" "$DEV/root/cache"  # what a retrain does not read (12 MB of the night's outputs)
    # both halves from .venv, every process's imports traced: what the device must be given
    trace=bench/out/prepare/trace && rm -rf bench/out/prepare && mkdir -p bench/out/prepare
    $venv bench/device_carry.py sitecustomize "$trace"
    cp -r "$DEV/root" bench/out/prepare/root
    ( export PYTHONPATH=$PWD/$trace:$PWD/src:$PWD PATH=$PWD/.venv/bin:$PATH PYTHONUNBUFFERED=1
      $venv bench/gpu_check.py --stand-in --epochs 1 --data "$DATA" --out bench/out/prepare/gpu_check
      $venv bench/gpu_pool_check.py --stand-in --max-epochs 1 --root bench/out/prepare/root --as-of "$AS_OF" \
          --source "csv:$DATA" --out bench/out/prepare/gpu_pool
      $venv bench/fleet_gpu.py --stand-in --out bench/out/prepare/fleet_gpu
    ) >bench/out/prepare/traced_run.log 2>&1 || { tail -30 bench/out/prepare/traced_run.log; exit 1; }
    $venv bench/device_carry.py pins --trace "$trace" --out "$DEV/carried.txt"
    $venv -m pip download -q --no-deps "${target[@]}" -d "$DEV/wheels" -r "$DEV/carried.txt"
    rm -rf bench/out/standin-wheels  # the same pins for this interpreter: the faithful stand-in's (not carried)
    $venv -m pip download -q --no-deps --only-binary=:all: -d bench/out/standin-wheels -r "$DEV/carried.txt"
    $venv bench/device_carry.py slim "$DEV/wheels" bench/out/standin-wheels  # pandas without its tests
    du -sh "$DEV" "$DEV"/*
    echo "$(ls "$DEV"/wheels/*.whl | wc -l) wheels carried ($(du -sh "$DEV/wheels" | cut -f1)), pins in $DEV/carried.txt"
    mib=$(( ($(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb "$DEV" | cut -f1)) / 1048576 ))
    echo "carried with the tree: $mib MiB (limit 64)"
    [ "$mib" -lt 64 ] || { echo "over the 64 MiB a device call carries" >&2; exit 1; }
    ;;
check)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    install_wheels
    PYTHONUNBUFFERED=1 "$PY" bench/gpu_check.py --data "$DATA" --out "${OUT:-bench/results}/gpu_check" \
        "${@:2}"
    ;;
pool)
    install_wheels
    PYTHONUNBUFFERED=1 "$PY" bench/gpu_pool_check.py --root "$ROOT" --as-of "$AS_OF" \
        --source "csv:$DATA" --out "${OUT:-bench/results}/gpu_pool" "${@:2}"
    ;;
fleet)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    install_wheels
    PYTHONUNBUFFERED=1 "$PY" bench/fleet_gpu.py --out "${OUT:-bench/results}/fleet_gpu" "${@:2}"
    ;;
all)
    rc=0
    bash "$0" check || rc=$?
    bash "$0" pool || rc=$?
    exit $rc
    ;;
stand-in)  # stand-in [check|pool|all|fleet]; STANDIN_WHEELS: another wheel folder (bench/standin_defects.py)
    s=bench/out/standin
    base=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
    rm -rf "$s" && mkdir -p "$s"
    "$base" -m venv --without-pip "$s/venv"
    .venv/bin/python bench/device_carry.py image --out "$s/image" --venv "$s/venv"
    cp -r "$DEV/root" "$s/root"
    export PYTHON=$PWD/$s/venv/bin/python WHEELS=${STANDIN_WHEELS:-bench/out/standin-wheels} SITE=$PWD/$s/site \
        ROOT=$s/root OUT=${OUT:-$s}
    ls "$WHEELS"/*.whl >/dev/null || { echo "no wheels in $WHEELS: run prepare" >&2; exit 1; }
    if [ "${2:-all}" = fleet ]; then exec bash "$0" fleet --stand-in; fi
    rc=0
    [ "${2:-all}" = pool ] || bash "$0" check --stand-in --epochs 1 || rc=$?
    [ "${2:-all}" = check ] || bash "$0" pool --stand-in --max-epochs 1 || rc=$?
    exit $rc
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
