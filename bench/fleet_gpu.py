"""A fleet trained in one pass on one GPU (``train.train_fleet``: tickers x members on one stack's
leading axis), measured as one device call of at most 8 minutes.

The jobs are the real tickers' default retrains (``bundle._fit_job``: each its own scaler and
windows, fitted through 2021-12-24, holdout monitored), repeated to make fleets of 2 .. 500
tickers (2 members each: 4 .. 1,000 slots). Phases, each written to ``OUT`` as soon as it ends (a
call cut short keeps what it measured):

1. ``scale``: fp32, 2 epochs per fleet size: the call's wall seconds, the training loop's, one
   epoch's (the second: past warm-up and compilation), the default retrain projected to its 8 epochs (the call plus 6 more
   epochs), peak GPU memory and slot-epochs per second;
2. ``alone``: the real tickers each trained alone (``fit_bundle``) against all of them in one pass
   (``fit_bundles``), the full default retrain: wall seconds, and each ticker's mean AUC on
   2022-2024 with the paired block-bootstrap interval of one pass minus alone;
3. ``variants`` at the largest size that ran: bf16 autocast (attention kernels guarded:
   ``train.attention_backends``) and a compiled forward (``TrainConfig.compile``), 2 epochs each.

A size or variant whose projected seconds would pass the budget is skipped and said so.

    device: bash bench/gpu_device.sh fleet                 # -> $OUT/fleet_gpu.{json,md}
    here:   .venv/bin/python bench/fleet_gpu.py --stand-in  # the same code on this CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "src")]

from machine import machine  # noqa: E402

TICKERS = ("SPY", "QQQ", "IWM", "DIA", "XLF", "XLK", "XLE", "XLV", "XLU", "EFA", "EEM", "TLT", "GLD")


def csv_of(ticker: str) -> Path:
    return REPO / "data" / ("spy_daily.csv" if ticker == "SPY" else f"etf/{ticker}.csv")


class Record:
    """The results so far, rewritten to ``out``.json/.md after every row (a cut-off call keeps them)."""

    def __init__(self, out: Path, head: dict) -> None:
        self.out, self.data = out, {**head, "scale": [], "alone": None, "variants": [], "skipped": [],
                                    "errors": []}

    def add(self, key: str, row) -> None:  # noqa: ANN001
        if isinstance(self.data[key], list):
            self.data[key].append(row)
        else:
            self.data[key] = row
        self.write()

    def write(self) -> None:
        from spywatch.atomic import atomic_write_json, atomic_write_text

        self.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out.with_suffix(".json"), self.data)
        atomic_write_text(self.out.with_suffix(".md"), markdown(self.data))


def markdown(d: dict) -> str:
    lines = ["# A fleet trained in one pass on one device (bench/fleet_gpu.py)", "",
             f"- ran: `{d['command']}`, {d['machine'].get('date')}, git {d['machine'].get('git')}, "
             f"{d['device']}, torch {d['torch']}",
             f"- jobs: the default retrain of {len(d['tickers'])} real tickers ({', '.join(d['tickers'])}), fitted "
             f"through {d['train_end']}, repeated to each fleet size; {d['members']} members per ticker; "
             f"batch {d['batch']}; windows per ticker {d['windows_min']}..{d['windows_max']}",
             f"- budget {d['budget_s']} s; data and jobs prepared in {d.get('prepare_s')} s", "",
             "## Fleet size (fp32, 2 epochs timed)", "",
             "| tickers | slots | call s | loop s | s / epoch | default retrain (8 epochs) projected s | "
             "peak GPU MB | slot-epochs / s |", "|---|---|---|---|---|---|---|---|"]
    for r in d["scale"]:
        lines.append(f"| {r['tickers']} | {r['slots']} | {r['call_s']} | {r['loop_s']} | {r['epoch_s']} | "
                     f"{r['retrain_projected_s']} | {r['peak_gpu_mb']} | {r['slot_epochs_per_s']} |")
    a = d.get("alone")
    if a:
        lines += ["", f"## The {len(a['tickers'])} real tickers: one pass against one at a time (full default "
                  f"retrain)", "",
                  f"- wall seconds: one at a time {a['one_at_a_time_s']}, one pass {a['one_pass_s']}",
                  f"- mean AUC on {a['scored']}; one pass - alone: {a['interval']}", "",
                  "| ticker | alone | one pass | one pass - alone [90% CI] |", "|---|---|---|---|"]
        for t, r in a["tickers"].items():
            c = r["one_pass_minus_alone"]
            lines.append(f"| {t} | {r['alone']} | {r['one_pass']} | {c['estimate']:+.4f} "
                         f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] |")
    if d["variants"]:
        lines += ["", "## Variants at the largest fleet (2 epochs timed)", "",
                  "| variant | tickers | call s | loop s | s / epoch | projected 8-epoch s | peak GPU MB |",
                  "|---|---|---|---|---|---|---|"]
        for r in d["variants"]:
            lines.append(f"| {r['variant']} | {r['tickers']} | {r['call_s']} | {r['loop_s']} | {r['epoch_s']} | "
                         f"{r['retrain_projected_s']} | {r['peak_gpu_mb']} |")
    for s in d["skipped"]:
        lines.append(f"- skipped: {s}")
    for e in d["errors"]:
        lines.append(f"- **error** in {e['what']}: `{e['error']}`")
    return "\n".join(lines) + "\n"


def timed_fleet(jobs, model_cfg, cfg, members: int, retrain_epochs: int = 8) -> dict:  # noqa: ANN001
    """One ``train_fleet`` call: its wall seconds, the loop's, peak GPU memory, and the retrain of
    ``retrain_epochs`` projected from them (the call, setup included, plus the epochs it did not run)."""
    import torch

    from spywatch.train import train_fleet

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = train_fleet(jobs, model_cfg, cfg, members)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    call = time.perf_counter() - t0
    first = out[0][0]
    loop = first.seconds * len(jobs) * members  # each result holds its share of the joint loop
    epochs = len(first.history)
    epoch = first.history[-1]["seconds"]  # the last epoch: past the first one's warm-up and compilation
    slots = len(jobs) * members
    return {"tickers": len(jobs), "slots": slots, "epochs": epochs, "call_s": round(call, 2),
            "loop_s": round(loop, 2), "epoch_s": round(epoch, 3),
            "retrain_projected_s": round(call + (retrain_epochs - epochs) * epoch, 1),
            "peak_gpu_mb": None if first.peak_gpu_mb is None else round(first.peak_gpu_mb),
            "slot_epochs_per_s": round(slots * epochs / loop, 1)}


def free(device_type: str) -> None:
    import gc

    import torch

    gc.collect()
    if device_type == "cuda":
        torch.cuda.empty_cache()


def main() -> int:  # noqa: C901 - one measurement, its phases in order
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,16,64,250,500", help="fleet sizes in tickers (phase 1)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="start no row that would end past this")
    ap.add_argument("--train-end", default="2021-12-24")
    ap.add_argument("--stand-in", action="store_true", help="this CPU, tiny: sizes 2,4, one real ticker pair")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", HERE / "results")) / "fleet_gpu")
    args = ap.parse_args()
    t_start = time.perf_counter()
    import torch

    from spywatch.audit import metrics_by_horizon
    from spywatch.bundle import FitSpec, _fit_job, fit_bundle, fit_bundles
    from spywatch.comparison import BootstrapConfig, compare
    from spywatch.dataset import build_table
    from spywatch.market_data import read_bars_csv
    from spywatch.policy import FitSettings
    from spywatch.train import StackJob, TrainConfig, Windows, pick_device, predict_proba

    device = pick_device("auto")
    tickers = ("SPY", "XLF") if args.stand_in else TICKERS
    sizes = [2, 4] if args.stand_in else [int(s) for s in args.sizes.split(",")]
    members = FitSettings().members
    spec = FitSpec(train_end=args.train_end, members=members)
    tables = {t: build_table(read_bars_csv(csv_of(t))) for t in tickers}
    fit_jobs = {t: _fit_job(tables[t], spec) for t in tickers}
    jobs = [StackJob(j.fit_w, j.val_w, j.hold_w, "holdout") for j in fit_jobs.values()]
    if args.stand_in:  # the same calls on the CPU in seconds: each ticker's last 1,024 training windows
        tail = slice(-1024, None)
        jobs = [StackJob(Windows(j.train.X[tail], j.train.y[tail], j.train.dates[tail]), j.val, j.monitor,
                         j.monitor_name) for j in jobs]
    model_cfg = next(iter(fit_jobs.values())).cfg
    base = TrainConfig(max_epochs=2, seed=0)
    n_windows = [len(j.train) for j in jobs]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rec = Record(args.out, {
        "command": "python bench/fleet_gpu.py " + " ".join(sys.argv[1:]), "machine": machine(),
        "device": f"{device.type} ({name})", "torch": torch.__version__, "tickers": list(tickers),
        "train_end": args.train_end, "members": members, "batch": base.batch_size, "budget_s": args.budget_s,
        "windows_min": min(n_windows), "windows_max": max(n_windows), "model": model_cfg.__dict__,
        "prepare_s": round(time.perf_counter() - t_start, 1)})
    left = lambda: args.budget_s - (time.perf_counter() - t_start)  # noqa: E731

    def fleet_of(n: int) -> list:
        return list(itertools.islice(itertools.cycle(jobs), n))

    def attempt(what: str, fn):  # noqa: ANN001, ANN202
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - recorded; the next row may still run
            rec.add("errors", {"what": what, "error": f"{type(exc).__name__}: {str(exc)[:400]}",
                               "trace": traceback.format_exc()[-2000:]})
            print(f"{what}: {type(exc).__name__}: {exc}", flush=True)
            return None
        finally:
            free(device.type)

    # warm-up: CUDA context, kernels chosen (not recorded)
    attempt("warm-up", lambda: timed_fleet(fleet_of(1), model_cfg, replace_cfg(base, max_epochs=1), members))
    # 1. fleet size, fp32
    per_slot = None  # seconds per slot of a 2-epoch call, from the last size
    largest = None
    for n in sizes:
        guess = per_slot * n * members if per_slot else 0.0
        if guess > left():
            rec.add("skipped", f"{n} tickers fp32: ~{guess:.0f} s projected, {left():.0f} s left")
            continue
        row = attempt(f"scale {n}", lambda: timed_fleet(fleet_of(n), model_cfg, base, members))
        if row is None:
            break  # a bigger fleet fails the same way (memory)
        rec.add("scale", row)
        print(json.dumps(row), flush=True)
        per_slot, largest = row["call_s"] / row["slots"], n
    # 2. the real tickers: one at a time against one pass, the full default retrain
    full = TrainConfig(seed=0)
    spec_full = FitSpec(train_end=args.train_end, members=members, epochs=1 if args.stand_in else spec.epochs)
    guess = (per_slot or 0.0) * len(tickers) * members * 4 * 2  # 8 epochs not 2, both ways
    if guess > left():
        rec.add("skipped", f"one pass vs alone: ~{guess:.0f} s projected, {left():.0f} s left")
    else:
        def alone_vs_pass() -> dict:
            t0 = time.perf_counter()
            alone = {t: fit_bundle(tables[t], spec_full, full) for t in tickers}
            alone_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            fleet = fit_bundles(tables, spec_full, full)
            pass_s = time.perf_counter() - t0
            rows, names = {}, tables[tickers[0]].targets_config.names
            for t in tickers:
                w = alone[t].windows(tables[t], "2022-01-01", "2024-12-31").labelled()
                pa, pf = predict_proba(alone[t].model, w.X), predict_proba(fleet[t].model, w.X)
                auc = lambda p: round(float(np.mean([m["auc"] for m in metrics_by_horizon(w.y, p, names).values()])), 4)  # noqa: E731
                c = compare(w.y, pf, pa, names, w.dates, "mean_auc", BootstrapConfig(n_boot=2000, block=10))
                rows[t] = {"alone": auc(pa), "one_pass": auc(pf), "one_pass_minus_alone": {
                    "estimate": round(c.estimate, 4), "ci_low": round(c.ci_low, 4), "ci_high": round(c.ci_high, 4)}}
            return {"tickers": rows, "one_at_a_time_s": round(alone_s, 1), "one_pass_s": round(pass_s, 1),
                    "scored": "2022-2024", "epochs": spec_full.epochs,
                    "interval": "paired block bootstrap over sessions, blocks of 10, 2000 resamples, 90%"}

        row = attempt("one pass vs alone", alone_vs_pass)
        if row is not None:
            rec.add("alone", row)
            print(json.dumps(row), flush=True)
    # 3. variants at the largest size that ran (bf16 may fail: last, so nothing else is lost)
    if largest:
        base_row = next(r for r in rec.data["scale"] if r["tickers"] == largest)
        for variant, cfg in (("bf16", replace_cfg(base, amp=True)), ("fp32 compiled", replace_cfg(base, compile=True)),
                             ("bf16 compiled", replace_cfg(base, amp=True, compile=True))):
            if variant.startswith("bf16") and device.type != "cuda":
                rec.add("skipped", f"{variant}: CUDA only")
                continue
            guess = base_row["call_s"] * (2.0 if "compiled" in variant else 1.0) + (20 if args.stand_in else 60)
            if guess > left():
                rec.add("skipped", f"{variant} at {largest} tickers: ~{guess:.0f} s projected, {left():.0f} s left")
                continue
            row = attempt(variant, lambda: timed_fleet(fleet_of(largest), model_cfg, cfg, members))
            if row is not None:
                rec.add("variants", {"variant": variant, **row})
                print(json.dumps({"variant": variant, **row}), flush=True)
    rec.data["total_s"] = round(time.perf_counter() - t_start, 1)
    rec.write()
    print(markdown(rec.data))
    return 1 if not rec.data["scale"] else 0


def replace_cfg(cfg, **changes):  # noqa: ANN001, ANN201
    from dataclasses import replace

    return replace(cfg, **changes)


if __name__ == "__main__":
    sys.exit(main())
