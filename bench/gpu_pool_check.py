"""The ``retrain`` deployment on the ``gpu`` work pool, run for real where a GPU is.

What production does, on one machine: a Prefect server, the work pools from
``deployments/pools.sh`` (the gpu pool's base job template pins one GPU per run),
``prefect deploy --name retrain`` from the project's ``prefect.yaml``, a worker on the gpu pool,
then ``run_deployment("retrain/retrain")`` for a session whose bars and champion are in the root
(``bench/gpu_device.sh prepare`` makes one). Records the flow run's state, where the challenger
trained (``cuda`` expected, with ``device="auto"``), its training seconds and peak GPU memory, the
training audit's verdict, the gate's decision and any device warning the flow logged.

    bash bench/gpu_device.sh pool                # on the device machine (its python, carried wheels)
    bash bench/gpu_device.sh stand-in            # here: the same steps on the CPU (checks the script)

Exit status 0 only when the run completed and (without ``--stand-in``) trained on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit_schema import Retrain  # noqa: E402
from spywatch.layout import RootLayout  # noqa: E402


def prefect_executable(folder: Path) -> str:
    """One executable for ``prefect`` (deployments/pools.sh takes a path): ``prefect_cli``'s
    script, or a wrapper around its ``python -m prefect``."""
    from spywatch.orchestration.server import prefect_cli

    cmd = prefect_cli()
    if len(cmd) == 1:
        return cmd[0]
    wrapper = folder / "prefect"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(f'"{c}"' for c in cmd) + ' "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="a root with the session's bars and a champion")
    ap.add_argument("--as-of", required=True)
    ap.add_argument("--source", required=True, help="the source spec the root's bars came from (provenance)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_pool")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap the retrain's epochs (a quick check)")
    ap.add_argument("--timeout", type=float, default=420.0, help="seconds to wait for the retrain run")
    ap.add_argument("--stand-in", action="store_true",
                    help="no GPU: the deployment runs with device=cpu; checks this script, proves nothing about CUDA")
    args = ap.parse_args()
    os.environ.update({"GX_ANALYTICS_ENABLED": "False", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1"})
    from spywatch.orchestration.server import LocalServer

    root = args.root.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="spywatch-gpu-pool-"))
    prefect = prefect_executable(tmp)
    steps: list[dict] = []

    def step(what: str, *cmd: str, env: dict | None = None) -> None:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=env or os.environ.copy(), capture_output=True, text=True, timeout=300)
        steps.append({"step": what, "rc": done.returncode, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{what}: rc {done.returncode}", flush=True)
        if done.returncode:
            raise RuntimeError(f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    # not <tmp>/prefect: that may be the wrapper script above (no `prefect` beside the interpreter)
    server = LocalServer.start(tmp / "prefect-home")  # sets PREFECT_HOME and PREFECT_API_URL: import Prefect after it
    from prefect.deployments import run_deployment

    worker = None
    result: dict = {"command": "python bench/gpu_pool_check.py " + " ".join(sys.argv[1:]), "machine": machine(),
                    "stand_in": args.stand_in, "as_of": args.as_of, "steps": steps}
    try:
        server.wait_healthy()
        env = {**os.environ, "SPYWATCH_ROOT": str(root), "SPYWATCH_REPO": str(REPO)}
        step("pools", "bash", str(REPO / "deployments" / "pools.sh"), prefect, env=env)
        step("deploy retrain", prefect, "--no-prompt", "deploy", "--name", "retrain", env=env)
        with open(tmp / "worker.log", "wb") as log:
            worker = subprocess.Popen([prefect, "worker", "start", "--pool", "gpu", "--limit", "1"], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        params = {"as_of": args.as_of, "root": str(root), "source": args.source,
                  "device": "cpu" if args.stand_in else "auto",
                  **({"max_epochs": args.max_epochs} if args.max_epochs else {})}
        t0 = time.perf_counter()
        run = run_deployment("retrain/retrain", parameters=params, timeout=args.timeout, as_subflow=False)
        result.update(flow_run=str(run.id), state=run.state.name if run.state else None,
                      work_pool=run.work_pool_name, wall_seconds=round(time.perf_counter() - t0, 1),
                      parameters=params)
        path = RootLayout(root).retrain_outcome(args.as_of)
        if path.exists():
            o = Retrain.model_validate(json.loads(path.read_text())["outcome"])
            result["outcome"] = {"device": o.device, "train_seconds": round(o.train_seconds or 0, 1),
                                 "members": o.members, "peak_gpu_mb": o.peak_gpu_mb,
                                 "challenger": o.challenger, "promoted": o.promoted,
                                 "gate": o.gate.rule if o.gate else None,
                                 "gate_reasons": o.gate.reasons if o.gate else None,
                                 "training_verdict": o.training.verdict if o.training else None,
                                 "device_warning": o.device_warning}
    except Exception as exc:  # recorded, and the exit status says so
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGINT)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        server.stop()
        if (tmp / "worker.log").exists():
            result["worker_log_tail"] = (tmp / "worker.log").read_text(errors="replace")[-4000:]
        if result.get("error") and server.log.exists():  # e.g. the server died at import
            result["server_log_tail"] = server.log.read_text(errors="replace")[-4000:]

    trained_on = (result.get("outcome") or {}).get("device") or "?"
    ok = result.get("state") == "Completed" and (args.stand_in or trained_on.startswith("cuda"))
    result["ok"] = ok
    atomic_write_json(args.out.with_suffix(".json"), result)
    o = result.get("outcome") or {}
    lines = ["# The retrain deployment on the gpu work pool (bench/gpu_pool_check.py)", "",
             f"- ran: `{result['command']}`, {result['machine']['date']}, git {result['machine'].get('git')}",
             f"- machine: {result['machine']['cpu']}, {result['machine']['host_cores']} cores, "
             f"GPU {result['machine'].get('cuda')}, torch {result['machine'].get('torch')}",
             *(["- **stand-in: device=cpu** (a check of this script, not of CUDA)"] if args.stand_in else []),
             "- set-up as in production: `deployments/pools.sh`, `prefect deploy --name retrain` from prefect.yaml, "
             "`prefect worker start --pool gpu`, `run_deployment('retrain/retrain')`",
             "", f"- flow run: {result.get('state')} on work pool `{result.get('work_pool')}`, "
             f"{result.get('wall_seconds')} s from the request to its end",
             f"- the challenger trained on **{trained_on}**: {o.get('train_seconds')} s, {o.get('members')} members, "
             f"peak GPU memory {o.get('peak_gpu_mb')} MB; training audit {o.get('training_verdict')}; "
             f"gate `{o.get('gate')}`, promoted {o.get('promoted')}",
             f"- device warning: {o.get('device_warning') or 'none'}",
             *([f"- error: {result['error']}"] if result.get("error") else []),
             "", f"{'OK' if ok else 'NOT OK'}: " + ("the gpu pool's retrain ran and trained on CUDA" if ok and not args.stand_in
                                                    else "the run completed (stand-in)" if ok else "see the JSON")]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
