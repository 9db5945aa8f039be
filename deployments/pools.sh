#!/usr/bin/env bash
# Create (or update) the spywatch work pools on the Prefect server at $PREFECT_API_URL.
#   cpu  a `process` pool: nightly and backfill runs, on any host with the checkout
#   gpu  a `process` pool whose base job template (gpu-process.json) pins one GPU per flow run
#        and labels its runs; retrain runs go here. Kubernetes: gpu-kubernetes.json instead.
# Idempotent (--overwrite). Usage: deployments/pools.sh [PREFECT_EXECUTABLE]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefect="${1:-prefect}"
"$prefect" --no-prompt work-pool create cpu --type process --overwrite
"$prefect" --no-prompt work-pool create gpu --type process --overwrite \
    --base-job-template "$here/gpu-process.json"
