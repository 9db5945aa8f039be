"""Pooled training: one PatchTST over SPY and the 12 fleet ETFs, judged on SPY out of time.

The channel-independent PatchTST reads every ticker's features the same way once each is scaled
by its own training statistics, so windows from many tickers can train one model. Here: SPY's
evaluation split (fit through 2021 up to an embargo before the test, test 2022-2024, as
``bench/evaluate_patchtst.py``); each ETF contributes its windows up to the same fit end, scaled
by its own fit-span statistics. Three predictors of SPY 2022-2024, side by side in one run:

- ``spy_only``: the default ensemble (2 members, the ``full`` recipe) on SPY's windows alone;
- ``pooled``: the same ensemble and recipe on SPY's and the ETFs' windows together;
- ``random_forest``: the Random Forest baseline on SPY's fit windows (the inputs of their last session).

Paired 90% block-bootstrap intervals (blocks of 10 sessions) of the differences in mean AUC over
h1/h3/h5 on the same SPY sessions. Pooled becomes the default only if it wins.

    .venv/bin/python bench/pooled_training.py        # ~5 min on 2 cores
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.baselines import BaselineConfig, fit_baselines  # noqa: E402
from spywatch.bundle import FULL_EPOCHS  # noqa: E402
from spywatch.comparison import compare  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import Split, bootstrap_config, model_inputs, resolve_periods  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.model import PatchTSTConfig  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, Windows, make_windows, predict_members, train_ensemble  # noqa: E402

SHARED = HERE.parent / "data"
ETFS = ["QQQ", "IWM", "DIA", "EFA", "EEM", "TLT", "GLD", "XLK", "XLF", "XLE", "XLV", "XLU"]
SPLIT = Split(train_end="2021-12-31", test_start="2022-01-01", test_end="2024-12-31")
LOOKBACK = 20


def main() -> None:
    t_start = time.perf_counter()
    spy = build_table(read_bars_csv(SHARED / "spy_daily.csv"))
    names = spy.targets_config.names
    periods = resolve_periods(spy.index, SPLIT, spy.targets_config.max_horizon, spy.features.dropna().index[0],
                              early_stopping=False)
    fit_end = periods.fit[1]
    spy_in = model_inputs(spy, "normalized", fit_end)
    spy_fit = make_windows(spy_in.frame, spy.targets, LOOKBACK, *periods.fit).labelled()
    test = make_windows(spy_in.frame, spy.targets, LOOKBACK, *periods.test).labelled()

    pooled_parts, counts = [spy_fit], {"SPY": len(spy_fit)}
    for ticker in ETFS:
        table = build_table(read_bars_csv(SHARED / "etf" / f"{ticker}.csv"))
        inputs = model_inputs(table, "normalized", fit_end)  # its own scaler, on its own fit span
        w = make_windows(inputs.frame, table.targets, LOOKBACK, None, fit_end).labelled()
        pooled_parts.append(w)
        counts[ticker] = len(w)
    pooled = Windows(np.concatenate([w.X for w in pooled_parts]), np.concatenate([w.y for w in pooled_parts]),
                     spy_fit.dates.append([w.dates for w in pooled_parts[1:]]))

    cfg = PatchTSTConfig(n_channels=spy_fit.X.shape[2], n_outputs=len(names), lookback=LOOKBACK)
    train = replace(TrainConfig(), max_epochs=FULL_EPOCHS)
    members = FitSettings().members
    runs, proba = {}, {}
    for name, windows in (("spy_only", spy_fit), ("pooled", pooled)):
        result = train_ensemble(windows, None, cfg, train, members)
        member_p = predict_members(result.model, test.X)
        proba[name] = member_p.mean(axis=0)
        m = metrics_by_horizon(test.y, proba[name], names)
        runs[name] = {"windows": len(windows), "train_seconds": round(result.seconds, 1),
                      "auc": {h: round(m[h]["auc"], 4) for h in names},
                      "mean_auc": round(statistics.mean(m[h]["auc"] for h in names), 4),
                      "brier": round(statistics.mean(m[h]["brier"] for h in names), 4),
                      "ece": round(statistics.mean(m[h]["ece"] for h in names), 4),
                      "member_mean_auc": [round(statistics.mean(v["auc"] for v in metrics_by_horizon(
                          test.y, p, names).values()), 4) for p in member_p]}
        print(name, runs[name], flush=True)
    base = fit_baselines(spy_fit.X[:, -1, :], spy_fit.y, BaselineConfig(), seed=0)
    proba["random_forest"] = base.predict(test.X[:, -1, :])["random_forest"]
    m = metrics_by_horizon(test.y, proba["random_forest"], names)
    runs["random_forest"] = {"windows": len(spy_fit), "auc": {h: round(m[h]["auc"], 4) for h in names},
                             "mean_auc": round(statistics.mean(m[h]["auc"] for h in names), 4),
                             "brier": round(statistics.mean(m[h]["brier"] for h in names), 4),
                             "ece": round(statistics.mean(m[h]["ece"] for h in names), 4)}
    boot = bootstrap_config(spy.targets_config.max_horizon, 2000)
    pairs = {}
    for a, b in (("pooled", "spy_only"), ("pooled", "random_forest"), ("spy_only", "random_forest")):
        c = compare(test.y, proba[a], proba[b], names, test.dates, "mean_auc", boot, a=a, b=b)
        pairs[f"{a} - {b}"] = {"estimate": round(c.estimate, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
                               "p_a_better": round(c.p_a_better, 3),
                               "by_horizon": {h: round(v["diff"], 4) for h, v in c.by_horizon.items()}}
    wins = pairs["pooled - spy_only"]["ci"][0] > 0
    out = {"command": "python bench/pooled_training.py", "machine": machine(), "periods": periods.to_dict(),
           "windows_per_ticker": counts, "test_sessions": len(test), "runs": runs, "comparisons": pairs,
           "pooled_wins": wins, "wall_seconds": round(time.perf_counter() - t_start, 1)}
    atomic_write_json(HERE / "results" / "pooled_training.json", out)
    mm = out["machine"]
    lines = ["# Pooled training over the fleet, judged on SPY (bench/pooled_training.py)", "",
             f"- ran: `{out['command']}`, {mm['date']}, git {mm.get('git')}, {out['wall_seconds']} s wall",
             f"- machine: {mm['cpu']}, {mm['host_cores']} cores, torch {mm.get('torch')}",
             f"- fit: every labelled window up to {fit_end.date()} (an embargo before the test); SPY {counts['SPY']} "
             f"windows, pooled {sum(counts.values())} (SPY + {len(ETFS)} ETFs, each scaled by its own fit-span "
             f"statistics); test: SPY {periods.test[0].date()}..{periods.test[1].date()}, {len(test)} sessions",
             f"- model: the default PatchTST, {members} members, {FULL_EPOCHS} epochs (the `full` recipe) for both; "
             "Random Forest on SPY's fit windows", "",
             "| predictor | windows | train s | h1 AUC | h3 AUC | h5 AUC | mean AUC | members | Brier | ECE |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| `{name}` | {r['windows']} | {r.get('train_seconds', '—')} | {r['auc']['h1']:.3f} | "
                     f"{r['auc']['h3']:.3f} | {r['auc']['h5']:.3f} | {r['mean_auc']:.4f} | "
                     f"{', '.join(f'{a:.3f}' for a in r.get('member_mean_auc', [])) or '—'} | {r['brier']:.4f} | "
                     f"{r['ece']:.4f} |")
    lines += ["", "Paired differences in mean AUC on the same SPY sessions (90% block bootstrap, blocks of "
              f"{boot.block}):", "", "| difference | estimate | 90% CI | P(first better) | h1 / h3 / h5 |",
              "|---|---|---|---|---|"]
    for name, c in pairs.items():
        lines.append(f"| {name} | {c['estimate']:+.4f} | [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] | {c['p_a_better']:.2f} | "
                     + " / ".join(f"{v:+.4f}" for v in c["by_horizon"].values()) + " |")
    lines += ["", f"Pooled training {'wins' if wins else 'does not win'} against SPY-only at the 90% level"
              + ("" if wins else ": the default stays SPY-only") + "."]
    atomic_write_text(HERE / "results" / "pooled_training.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
