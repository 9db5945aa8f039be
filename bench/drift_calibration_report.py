"""Markdown report of the drift calibration (bench/drift_calibration.py) and its explanatory notes.

Everything measured comes in through the ``doc`` dict that bench/drift_calibration.py builds; the grids it
describes come from bench/drift_calibration_settings.py.
"""

from __future__ import annotations

import numpy as np

from drift_calibration_settings import (
    REF_START, REF_END, WINDOW, STRIDE, SHIFTS, ONSET_SESSIONS, ONSET_SHIFTS, ALPHAS, MAX_SELECTION_ALARMS,
    MIN_X100, PERSISTENCE_K, RECENT_CHOICES, REGIME_METHODS, REGIME_FAMILIES, REGIME_ALPHAS,
)

from spywatch.features import FEATURES


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def markdown(doc: dict) -> str:
    rep, th = doc["report_split"], doc["thresholds"]
    base = rep["baselines"]["issue_w95"]
    rule = th["dataset_rule"]
    reg = th["regime"]
    sel_split = doc["selection_split"]
    vol = rep["vol_faults"]
    worst_x100 = min(rep["x100_flagged_by_feature"].values())
    rt = rep["regime_tests"]
    lines = [
        "# Drift calibration on real SPY history (Evidently methods, per-feature thresholds)\n",
        f"- ran: `{doc['command']}`, {doc['machine']['date']}, {doc['elapsed_s']:.0f} s wall",
        f"- machine: {doc['machine']['cpu']}, {doc['machine']['host_cores']} cores, CPU only (shared with other work: "
        f"1-minute load average {doc['load_average_1m']['before']:.1f} at the start, "
        f"{doc['load_average_1m']['after']:.1f} at the end)",
        "- data: `data/spy_daily.csv` read in place (real SPY 1993-2024); features from `spywatch.features`",
        f"- (a) in-distribution: each year of {REF_START[:4]}-{REF_END[:4]} is held out of the {REF_START[:4]}-{REF_END[:4]} "
        f"reference in turn and its {WINDOW}-session windows (stride {STRIDE}) are tested against the rest. "
        f"Selection split = even years ({doc['selection_split']['windows']} windows), report split = odd years "
        f"({rep['windows']} windows). All figures below are on the report split unless they say otherwise.",
        "- (b) faults on the same windows: log moves x1.5/x2/x3 from the window start (bars rebuilt, features "
        "recomputed), x2 settled (from 252 sessions before), each feature x100 in turn, each feature shifted by "
        f"+-{SHIFTS[0]:g}..{SHIFTS[-1]:g} training std over the whole window, and by +-{ONSET_SHIFTS[0]:g}..{ONSET_SHIFTS[-1]:g} "
        f"std over only the last {' or '.join(map(str, ONSET_SESSIONS))} sessions (a change that has just begun).",
        f"- chosen on the selection split only: per-feature false-flag rate alpha = {th['per_feature_false_flag_rate']} "
        f"(tried {', '.join(map(str, ALPHAS))}); per feature the method with the best mean detection over whole-window "
        f"and onset shifts among methods flagging x100 in >= {MIN_X100:.0%} of windows; dataset rule = the fewest "
        f"drifted features keeping selection alarms <= {MAX_SELECTION_ALARMS:.0%}: **at least {rule['min_drifted_features']} "
        f"of {len(FEATURES)}** (Evidently `drift_share` {rule['drift_share']}); alpha maximises the mean of three "
        "selection detection rates (x2 alarm by this rule, whole-window shifts, onsets). This is the *training rule*, "
        "unchanged by the regime check. A retrain additionally needs "
        f"{rule['persistence_k']} consecutive drifted nightly runs (`persistence_k`).",
        f"- regime check, then chosen on the selection split only: the window against the **{reg['recent_sessions']} "
        f"sessions just before it** (tried {', '.join(map(str, RECENT_CHOICES))}); per regime feature the method (of "
        f"{', '.join(REGIME_METHODS)}; ret_1 and gap only wasserstein/ks) that flags the x2 fault most often at a "
        f"per-test false-flag rate of **{reg['per_feature_false_flag_rate']}** against the recent past (tried "
        f"{', '.join(map(str, REGIME_ALPHAS))}); family **{reg['family']}** (tried {', '.join(REGIME_FAMILIES)}); "
        f"**at least {reg['dataset_rule']['min_drifted_features']} of {len(reg['features'])}** drifted; the option with "
        f"the best selection x2 alarm of the union (training rule OR regime rule) with the union alarming <= "
        f"{MAX_SELECTION_ALARMS:.0%} of selection windows (selection: union {pct(sel_split['dataset_alarm'])}, x2 "
        f"{pct(sel_split['vol_faults']['vol_x2_at_start']['dataset_alarm'])}). The **dataset alarm is the union**.",
        f"- baseline (the issue's): normed Wasserstein for every feature at the 95th percentile of selection null "
        f"windows; its own dataset rule chosen the same way (>= {base['min_features']} features).",
        "",
        "## Targets (report split)\n",
        "| target | required | measured | met |", "|---|---|---|---|",
        f"| (a) windows raising the dataset alarm (either rule) | <= 5% | {pct(rep['dataset_alarm'])} (training rule "
        f"{pct(rep['training_alarm'])}, regime rule {pct(rep['regime_alarm'])}) | {_yes(rep['dataset_alarm'] <= 0.05)} |",
        f"| (a) feature tests flagging | <= 10% | training tests {pct(rep['feature_flag_rate'])}, regime tests "
        f"{pct(rt['feature_flag_rate'])} | {_yes(max(rep['feature_flag_rate'], rt['feature_flag_rate']) <= 0.10)} |",
        f"| (b) volatility x2 from the window start raises the dataset alarm | >= 90% | "
        f"{pct(vol['vol_x2_at_start']['dataset_alarm'])} | {_yes(vol['vol_x2_at_start']['dataset_alarm'] >= 0.9)} |",
        f"| (b) the x100 feature is flagged (each feature in turn) | >= 90% each | all {pct(rep['x100_flagged_all'])}, "
        f"worst feature {pct(worst_x100)} | {_yes(worst_x100 >= 0.9)} |",
        "",
        "The regime rule only runs when the caller passes the sessions before the window: "
        "`run_drift_report(reference, current, config, recent=recent_rows(features, config.features, current, "
        f"config.recent_sessions))`. Without `recent` the dataset alarm is the training rule alone (x2: "
        f"{pct(vol['vol_x2_at_start']['training_alarm'])}).", "",
        doc["notes"]["vol"], "",
        "## Chosen training tests (`src/spywatch/drift_thresholds.json`, `features`)\n",
        "| feature | method | Evidently threshold | false flags (a) | x100 flagged | +1 std flagged (baseline) |",
        "|---|---|---|---|---|---|",
    ]
    for name in FEATURES:
        f = th["features"][name]
        lines.append(f"| {name} | {f['method']} | {f['threshold']:.4g} | {pct(rep['feature_flag_rate_by_feature'][name])} | "
                     f"{pct(rep['x100_flagged_by_feature'][name])} | {rep['shift_curve'][name]['1']:.2f} "
                     f"({base['shift_curve'][name]['1']:.2f}) |")
    lines += ["", f"## Chosen regime tests (`regime`: the window vs the {reg['recent_sessions']} sessions before it)\n",
              f"Report windows with a full recent past: {rt['windows_with_recent_past']}.", "",
              "| feature | method | Evidently threshold | false flags (a) | flags the x2 fault |", "|---|---|---|---|---|"]
    for name, f in reg["features"].items():
        lines.append(f"| {name} | {f['method']} | {f['threshold']:.4g} | {pct(rt['feature_flag_rate_by_feature'][name])} | "
                     f"{pct(rt['x2_flag_rate_by_feature'][name])} |")
    lines += ["", "## (b) volatility faults (report split)\n",
              "| fault | dataset alarm (either rule) | training rule | regime rule | mean training features flagged | "
              "baseline dataset alarm |", "|---|---|---|---|---|---|"]
    for name, v in vol.items():
        lines.append(f"| {name} | {pct(v['dataset_alarm'])} | {pct(v['training_alarm'])} | {pct(v['regime_alarm'])} | "
                     f"{v['mean_features_flagged']:.1f} | {pct(base['vol_faults'][name]['dataset_alarm'])} |")
    lines += ["", "x2 from the window start, by the window's own volatility before the fault (terciles of mean vol_20):", "",
              "| window | windows | mean vol_20 | dataset alarm |", "|---|---|---|---|"]
    for label, v in doc["vol_x2_by_tercile"].items():
        lines.append(f"| {label} | {v['windows']} | {v['mean_vol_20']:.4f} | {pct(v['dataset_alarm'])} |")
    c, u = doc["vol_ceiling"], doc["union_ceiling"]
    lines += ["", "Ceilings on the selection split, spending the whole 5% on selection windows:",
              f"- training rule alone (every alpha and k): x2 alarm {pct(c['vol_x2_alarm'])} (alpha {c.get('alpha')}, "
              f">= {c.get('min_features')} features, selection alarms {pct(c.get('null_alarm', 0))});",
              f"- training OR regime (every training alpha and k, recent-past length, regime alpha, family, k_r): x2 alarm "
              f"{pct(u['vol_x2_alarm'])} (alpha {u.get('alpha')}, >= {u.get('min_features')} features; {u.get('recent')} "
              f"recent sessions, regime alpha {u.get('regime_alpha')}, family {u.get('family')}, >= "
              f"{u.get('regime_min_drifted')}; selection alarms {pct(u.get('null_alarm', 0))}).", "",
              "## (b) whole-window mean shift: detection curve per feature\n",
              "Share of report windows in which the shifted feature is flagged (mean of +shift and -shift), "
              "`ours / baseline`.", "",
              "| feature | " + " | ".join(f"{s:g} std" for s in SHIFTS) + " |", "|---|" + "---|" * len(SHIFTS)]
    for name in FEATURES:
        cur, b = rep["shift_curve"][name], base["shift_curve"][name]
        lines.append(f"| {name} | " + " | ".join(f"{cur[f'{s:g}']:.2f} / {b[f'{s:g}']:.2f}" for s in SHIFTS) + " |")
    lines += ["", doc["shift_summary"]["text"], "",
              "## (b) onset: only the last sessions shifted\n",
              "Mean detection over shifts of " + ", ".join(f"{s:g}" for s in ONSET_SHIFTS) + " std (both signs), "
              "`ours / baseline`.", "",
              "| feature | " + " | ".join(f"last {n} sessions" for n in ONSET_SESSIONS) + " |",
              "|---|" + "---|" * len(ONSET_SESSIONS)]
    for name in FEATURES:
        cells = []
        for n in ONSET_SESSIONS:
            o = np.mean([rep["onset_curve"][name][f"{n}:{s:g}"] for s in ONSET_SHIFTS])
            b = np.mean([base["onset_curve"][name][f"{n}:{s:g}"] for s in ONSET_SHIFTS])
            cells.append(f"{o:.2f} / {b:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"All features: whole-window shifts {pct(rep['shift_power'])} vs {pct(base['shift_power'])}, "
              f"onsets {pct(rep['onset_power'])} vs {pct(base['onset_power'])} (ours vs baseline, at false-flag rates "
              f"{pct(rep['feature_flag_rate'])} vs {pct(base['feature_flag_rate'])}).", "",
              "## (c) replay 2005-2024, night by night\n",
              "Each month's nightly runs (the last 60 sessions) against a reference that ends before the month's "
              "first window: *expanding* = all rows since 1994 (a champion retrained on all history), *rolling* = the "
              f"previous 10 years. Months alarmed = the month's last run raises the dataset alarm; nights = share of "
              f"nightly runs alarmed; features = mean drifted features per night (of {len(FEATURES)}); persistent = "
              f"months in which {PERSISTENCE_K} consecutive nights alarmed.", "",
              "The regime rule does not depend on the training reference (each night's window against the "
              f"{reg['recent_sessions']} sessions before it), so its column is the same for both references.", "",
              "| year | nights alarmed, either rule (expanding / rolling 10y) | training rule (expanding / rolling) | "
              "regime rule | regime features per night | training features per night (expanding / rolling) | months "
              "alarmed at month end (expanding / rolling) | months with a persistent alarm (expanding / rolling) |",
              "|---|---|---|---|---|---|---|---|"]
    exp, rol = doc["replay"]["expanding"]["per_year"], doc["replay"]["rolling_10y"]["per_year"]
    for year in exp:
        e, r = exp[year], rol[year]
        lines.append(f"| {year} | {pct(e['nights_alarmed_share'])} / {pct(r['nights_alarmed_share'])} | "
                     f"{pct(e['training_nights_share'])} / {pct(r['training_nights_share'])} | "
                     f"{pct(e['regime_nights_share'])} | {e['mean_regime_drifted_features']:.2f} | "
                     f"{e['mean_drifted_features']:.1f} / {r['mean_drifted_features']:.1f} | "
                     f"{e['months_alarmed']} / {r['months_alarmed']} | "
                     f"{e['months_with_persistent_alarm']} / {r['months_with_persistent_alarm']} |")
    ag = doc["evidently_agreement"]
    lines += ["", doc["notes"]["replay"], "",
              "## Evidently agrees with the fast computation\n",
              f"{ag['dataset_verdicts_compared']} report windows x faults (clean, x100, +1 std, x2 regime change) re-run "
              "through `spywatch.drift.detect_drift(..., recent=...)` (two Evidently 0.7 `Report`s, each a "
              "`DriftedColumnsCount` plus one `ValueDrift` per column, the metrics `DataDriftPreset` generates, with "
              "the JSON's per-column methods and thresholds: the window vs the training reference, and vs its recent "
              f"past): {ag['agreeing']} of {ag['feature_verdicts_compared']} per-feature "
              f"verdicts (training and regime tests) agree ({pct(ag['agreement'])}), {ag['dataset_agreeing']} of {ag['dataset_verdicts_compared']} "
              f"dataset verdicts; worst relative score difference {ag['worst_relative_score_difference']:.1e}.", "",
              "Timing of one report with its HTML: `bench/results/drift_timing.md`.", "",
              "## Selection split: the alphas tried\n",
              "| alpha | rule (>= features) | selection alarms | feature flags | x2 alarm (training rule alone) | whole-window | onset | objective |",
              "|---|---|---|---|---|---|---|---|"]
    for row in doc["alphas_tried"]:
        lines.append(f"| {row['alpha']} | {row['min_features']} | {pct(row['null_alarm'])} | {pct(row['feature_flag_rate'])} | "
                     f"{pct(row['vol_x2_alarm'])} | {pct(row['shift_power'])} | {pct(row['onset_power'])} | "
                     f"{row['objective']:.3f} |")
    lines += ["", "## Selection split: regime options (best union per option, training rule fixed)\n",
              "| recent sessions | regime alpha | family | >= k_r | union alarms | x2 alarm | methods |",
              "|---|---|---|---|---|---|---|"]
    top = sorted(doc["regime_options_tried"], key=lambda r: -r["vol_x2_alarm"])[:12]
    for row in top:
        lines.append(f"| {row['recent']} | {row['regime_alpha']} | {row['family']} | {row['regime_min_drifted']} | "
                     f"{pct(row['null_alarm'])} | {pct(row['vol_x2_alarm'])} | "
                     f"{', '.join(f'{k}:{v}' for k, v in row['methods'].items())} |")
    lines += [f"({len(doc['regime_options_tried'])} options in all; the 12 best shown.)",
              "", "## Notes\n", doc["notes"]["method"], ""]
    return "\n".join(lines)


def shift_summary(rep: dict) -> dict:
    base = rep["baselines"]["issue_w95"]
    ours1 = {n: rep["shift_curve"][n]["1"] for n in FEATURES}
    base1 = {n: base["shift_curve"][n]["1"] for n in FEATURES}
    n90, b90 = [n for n, v in ours1.items() if v >= 0.9], [n for n, v in base1.items() if v >= 0.9]
    better = [n for n in FEATURES if ours1[n] > base1[n] + 0.02]
    worse = [n for n in FEATURES if ours1[n] < base1[n] - 0.02]
    text = (f"A 1-std shift is caught in >= 90% of report windows for {len(n90)} of {len(FEATURES)} features with the "
            f"chosen tests ({', '.join(n90) or 'none'}) and {len(b90)} with the baseline ({', '.join(b90) or 'none'}). "
            f"At 1 std the chosen tests do better on {', '.join(f'{n} ({ours1[n]:.2f} vs {base1[n]:.2f})' for n in better) or 'no feature'}"
            f" and worse on {', '.join(f'{n} ({ours1[n]:.2f} vs {base1[n]:.2f})' for n in worse) or 'no feature'}. "
            "Slow features stay hard for any method: their in-distribution windows already sit 1-2 std from the "
            "reference mean, so a 1-std shift hides inside the null.")
    return {"ours_90": n90, "baseline_90": b90, "better_at_1std": better, "worse_at_1std": worse, "text": text}


NOTES_METHOD = (
    "Methods considered against the training reference: Evidently's normed Wasserstein (`wasserstein`), two-sample "
    "K-S (`ks`, p-value) and the pooled two-sample t-test (`t_test`, p-value); against the recent past also "
    "Evidently's `mannw` (scipy's Mann-Whitney U, one-sided in Evidently: small p = current larger than reference, "
    "which is the direction a volatility rise moves the vol features). Scores here reproduce Evidently's formulas "
    "exactly (Wasserstein normed by the reference's population std, floor 0.001; scipy's exact K-S p-value; pooled t; "
    "scipy's U test with its tie and continuity corrections). K-S wins many "
    "whole-window shifts (it is rank-based, so a skewed feature's compressed side counts as much as its long tail) "
    "but is bounded: once a window sits beyond the reference it scores no higher however far out it goes, so it "
    "catches onsets late and x100 only where values are far from zero; the onset grid and the x100 constraint "
    "keep it where it earns its place. t-test thresholds are p-values far below 0.05 (and K-S ones for slow "
    "features too) because in-distribution windows of slow features sit many standard errors from the reference "
    "mean (and, against the recent past, vol features are autocorrelated, so 60 sessions are far fewer independent "
    "observations than 60); that is the calibration working. Left out: `anderson` (scipy caps its p-value at 0.001, "
    "which the slow features' null reaches), binned methods (`psi`, `jensenshannon`, `kl_div`, `hellinger`: bins "
    "depend on the current window), `ed` (energy distance in raw units: its scale moves with the volatility level, so "
    "one threshold cannot serve calm and turbulent pasts), `empirical_mmd` (a permutation test, slow). A domain "
    "classifier: Evidently 0.7 offers a classifier-based drift method only for embeddings (`EmbeddingsDrift` with its "
    "`model()` method); it was not benchmarked here, and on the same features it would face the same null (a real "
    "volatility shock is as separable from its recent past as a doubled window). The prediction-drift threshold "
    "(Wasserstein 0.5 per horizon) is not calibrated here (no champion predictions exist in this bench): a constant "
    "predictor scores about 0.8 (mean absolute deviation over std), a healthy spread one well below 0.5 in the unit "
    "tests. Disclosure: before this bench was extended, exploratory scripts (not committed) printed x2 detection on "
    "both splits for about 40 candidate statistics (volatility ratios, medians, quantiles, Mann-Whitney, K-S, "
    "Wasserstein, t-test; recent pasts of 20-250 sessions); the figures above come from the selection-only procedure "
    "with its grids and the 3% budget fixed before this run.")


def vol_note(rep: dict, tercile: dict, ceiling: dict, ratio: dict) -> str:
    v = rep["vol_faults"]
    x2 = v["vol_x2_at_start"]
    q = ratio["quantiles"]
    return (
        f"**Why doubling volatility is caught in {pct(x2['dataset_alarm'])} of windows, not 90%.** Against the training "
        "reference (22 years with 1998, 2000-2002 and 2008-2009 in it) a calm window with doubled moves is an ordinary "
        f"window: the training rule alone catches {pct(x2['training_alarm'])}. Against its own recent past it has twice "
        f"the volatility; that is what the regime rule reads, and it lifts the alarm to {pct(x2['dataset_alarm'])} "
        f"(calm windows {pct(tercile['calm']['dataset_alarm'])}, middle {pct(tercile['middle']['dataset_alarm'])}, "
        f"turbulent {pct(tercile['turbulent']['dataset_alarm'])}; tripling {pct(v['vol_x3_at_start']['dataset_alarm'])}). "
        "It stops there because real history does the same thing to itself. In the report windows, the standard "
        f"deviation of ret_1 relative to the {ratio['recent']} sessions before the window has median {q['q0.5']:.2f}, "
        f"95th percentile {q['q0.95']:.2f} and 97th {q['q0.97']:.2f}: {pct(ratio['share_at_least_1.75'])} of real "
        f"windows (in {', '.join(map(str, ratio['years_at_least_1.75']))}) are at least 1.75x as volatile as their past "
        f"year and {pct(ratio['share_at_least_2'])} at least 2x, and (a) counts them all as in-distribution. The fault "
        "multiplies a window's ratio by exactly 2, so a rule reading this ratio that stays quiet on 97% of real windows "
        f"catches a doubled window only when its own ratio was above {q['q0.97'] / 2:.2f}: {pct(ratio['doubled_beyond_real_q97'])} "
        "of them. Other volatility measures (range_pct, rank tests, several features together) move that only a "
        "little, because they all see the same real shocks. Over every option tried (training "
        "alpha and k, recent-past length, regime alpha, family and k_r), spending the whole 5% on selection windows, the "
        f"best selection x2 alarm is {pct(ceiling['vol_x2_alarm'])}. Reaching 90% needs information a synthetic doubling "
        "lacks and a real regime change has (volume, for one: the fault leaves it alone); a rule built on that gap would "
        "catch the fault and miss real regime changes, so it was not built. `bench/drift_vol_bound.py` (results: "
        "`bench/results/drift_vol_bound.md`) checks the ceiling directly: for eight standard volatility forecasts made "
        "from the sessions before each window (flat past year, past 60 sessions, EWMA 0.94/0.97/0.99, a HAR blend, "
        "GARCH(1,1), the high-low range against its EWMA), a threshold spending the whole 5% budget on selection "
        "windows catches the doubled report windows in 54-63% and the tripled ones in 89-100%: real SPY volatility "
        "departs from any of these forecasts with a log-ratio spread of 0.25-0.39, against the 0.69 log shift of a "
        "doubling.")


def replay_note(replays: dict) -> str:
    exp, rol = replays["expanding"]["per_year"], replays["rolling_10y"]["per_year"]

    def top(per_year: dict, key: str, n: int = 6) -> str:
        years = [y for y in sorted(per_year, key=lambda y: -per_year[y][key]) if per_year[y][key] > 0][:n]
        return ", ".join(f"{y} ({pct(per_year[y][key])})" for y in years) or "none"

    def months(year: int) -> str:
        return ", ".join(m["month"] for m in replays["expanding"]["monthly"]
                         if m["month"].startswith(str(year)) and m["nights_regime_alarm"])

    regime_only = [y for y in exp if exp[y]["regime_nights_share"] > 0 and exp[y]["training_nights_share"] == 0]
    e22, r22 = exp.get(2022, {}), rol.get(2022, {})
    busiest = [f"{y} ({exp[y]['mean_regime_drifted_features']:.2f})"
               for y in sorted(exp, key=lambda y: -exp[y]["mean_regime_drifted_features"])[:5]]
    return (f"Nights alarmed by either rule, most first: expanding reference {top(exp, 'nights_alarmed_share')}; "
            f"rolling 10-year {top(rol, 'nights_alarmed_share')}. Training rule alone: expanding "
            f"{top(exp, 'training_nights_share')}; rolling {top(rol, 'training_nights_share')}. Regime rule: "
            f"{top(exp, 'regime_nights_share', 8)}. Years only the regime rule flags (months with regime alarms): "
            f"{'; '.join(f'{y} ({months(y)})' for y in regime_only) or 'none'}: volatility changes against the previous "
            "year that stay inside the training range. The regime rule lags a shock by a few weeks (3 of 7 features must "
            "move over a 60-session window). 2022, a slow bear market with moderate volatility: "
            f"{pct(e22.get('nights_alarmed_share', 0))} of nights ({months(2022) or 'no month'}), all from the regime "
            f"rule, {e22.get('months_with_persistent_alarm', 0)} months with a persistent alarm; the training rule stays "
            f"quiet against either reference (its per-feature flags average {e22.get('mean_drifted_features', 0):.1f} "
            f"features per night against the expanding reference, {r22.get('mean_drifted_features', 0):.1f} against the "
            "rolling one, mostly dist_sma_200 and drawdown_252). So 2022 is visible but does not stand out the way 2008 "
            "and 2020 do: it is inside a training range that holds 2000-2002 and 2008, and against its own past year it "
            "moved less (regime features drifted per night, most first: "
            f"{', '.join(busiest)}).")
