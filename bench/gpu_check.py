"""The GPU path, proven where a GPU is: the champion retrain on CUDA (fp32, and bf16 autocast)
against the same retrain on the CPU, same seeds, same windows.

For each of ``cpu``, ``cuda_fp32`` and ``cuda_bf16`` it trains what a retrain trains
(``fit_bundle``: the ``full`` recipe, the default PatchTST, ``FitSettings().members`` members
stacked) on every session up to an embargo before 2022 and scores 2022-2024, recording the training
seconds, peak GPU memory, the ensemble's AUC, Brier and ECE, and the largest difference in any
probability against the CPU run. The stated tolerance for "the same metrics as on the CPU":
|mean AUC difference| <= 0.01 and the largest probability difference <= 0.05 for fp32 (CUDA
kernels sum in another order; 8 epochs amplify it a little), reported as is for bf16.

    .venv/bin/python bench/gpu_check.py            # ~2 min on one GPU plus the CPU run
    .venv/bin/python bench/gpu_check.py --stand-in --epochs 1   # the plumbing, where no GPU is

On the lent device machine it runs through ``bench/gpu_device.sh check`` (that machine's own python
with torch and CUDA, the data and pinned wheels carried in ``.device/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402
from train_timing import DATA, retrain_at  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.train import TrainConfig, predict_members  # noqa: E402

RUNS = {"cpu": ("cpu", False), "cuda_fp32": ("cuda", False), "cuda_bf16": ("cuda", True)}
AUC_TOLERANCE, PROBA_TOLERANCE = 0.01, 0.05


def run(table, device: str, amp: bool, epochs: int | None = None) -> tuple[dict, np.ndarray]:
    bundle, w, _, wall = retrain_at(table, "eval", TrainConfig(device=device, amp=amp),
                                    **({"epochs": epochs} if epochs else {}))
    proba = predict_members(bundle.model, w.X).mean(axis=0)
    names = table.targets_config.names
    m = metrics_by_horizon(w.y, proba, names)
    return {"device": bundle.metrics["device"], "amp_bf16": amp, "train_seconds": round(bundle.metrics["train_seconds"], 2),
            "fit_bundle_wall_seconds": round(wall, 2), "peak_gpu_mb": (None if bundle.metrics["peak_gpu_mb"] is None
                                                                         else round(bundle.metrics["peak_gpu_mb"], 1)),
            "auc": {h: round(m[h]["auc"], 4) for h in names},
            "mean_auc": round(statistics.mean(m[h]["auc"] for h in names), 4),
            "brier": round(statistics.mean(m[h]["brier"] for h in names), 4),
            "ece": round(statistics.mean(m[h]["ece"] for h in names), 4)}, proba


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None,
                    help="results (.json, .md beside); default bench/results/gpu_check, with --stand-in "
                         "bench/out/gpu_check_stand_in")
    ap.add_argument("--data", type=Path, default=DATA, help="the SPY daily CSV")
    ap.add_argument("--epochs", type=int, default=None, help="override the retrain's epochs (a quick check)")
    ap.add_argument("--stand-in", action="store_true",
                    help="no GPU: the CUDA runs on the CPU instead, to check this script end to end; "
                         "proves nothing about CUDA and never writes to bench/results")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.stand_in:
        raise SystemExit("no CUDA device here: this bench proves the GPU path and has nothing to measure "
                         "(--stand-in checks the script on the CPU)")
    out_path = args.out or (HERE / "out" / "gpu_check_stand_in" if args.stand_in else HERE / "results" / "gpu_check")
    table = build_table(read_bars_csv(args.data))
    results, probas = {}, {}
    for name, (device, amp) in RUNS.items():
        results[name], probas[name] = run(table, "cpu" if args.stand_in else device, amp, args.epochs)
        print(name, json.dumps(results[name]), flush=True)
    for name in ("cuda_fp32", "cuda_bf16"):
        results[name]["max_proba_diff_vs_cpu"] = round(float(np.abs(probas[name] - probas["cpu"]).max()), 5)
        results[name]["mean_auc_diff_vs_cpu"] = round(results[name]["mean_auc"] - results["cpu"]["mean_auc"], 4)
        results[name]["speedup_vs_cpu"] = round(results["cpu"]["train_seconds"] / results[name]["train_seconds"], 2)
    fp32 = results["cuda_fp32"]
    verdict = (abs(fp32["mean_auc_diff_vs_cpu"]) <= AUC_TOLERANCE and fp32["max_proba_diff_vs_cpu"] <= PROBA_TOLERANCE)
    out = {"command": "python bench/gpu_check.py " + " ".join(sys.argv[1:]), "machine": machine(), "runs": results,
           "tolerance": {"mean_auc": AUC_TOLERANCE, "max_proba": PROBA_TOLERANCE}, "fp32_matches_cpu": verdict,
           "stand_in": args.stand_in, "epochs": args.epochs}
    atomic_write_json(out_path.with_suffix(".json"), out)
    m = out["machine"]
    lines = ["# The GPU path against the CPU (bench/gpu_check.py)", "",
             f"- ran: `{out['command']}`, {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, GPU {m.get('cuda')}, torch {m.get('torch')}",
             "- the champion retrain (full recipe, default PatchTST, stacked members), fit through 2021, scored 2022-2024"
             + (f", {args.epochs} epochs" if args.epochs else ""),
             *(["- **stand-in: every run on the CPU** (a check of this script, not of CUDA)"] if args.stand_in else []),
             "", "| run | train s | speed-up | peak GPU MB | mean AUC | vs CPU | max |p - p_cpu| | Brier | ECE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['train_seconds']} | {r.get('speedup_vs_cpu', 1.0)}x | {r['peak_gpu_mb'] or '—'} | "
                     f"{r['mean_auc']:.4f} | {r.get('mean_auc_diff_vs_cpu', 0):+.4f} | "
                     f"{r.get('max_proba_diff_vs_cpu', 0)} | {r['brier']:.4f} | {r['ece']:.4f} |")
    lines += ["", f"fp32 on CUDA {'matches' if verdict else 'does NOT match'} the CPU within |mean AUC| <= "
              f"{AUC_TOLERANCE} and max |p| <= {PROBA_TOLERANCE}."]
    atomic_write_text(out_path.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
