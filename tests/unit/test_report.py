"""The HTML audit report: it renders for a good, a bad-data and a collapsed night, loads nothing
from anywhere, and a real headless Chromium shows the verdicts, the numbers and the plots.

The good and the bad-data nights are real audits: ``tests/data/audit_example.json`` and
``tests/data/audit_validation_failure.json`` are what ``bench/audit_example.py`` published from
real runs of the pipeline, so every expectation here is read from them, never typed in. Regenerate
``docs/audit_report.png`` from the example with
``SPYWATCH_UPDATE_DOCS_SCREENSHOT=1 .venv/bin/python -m pytest tests/unit/test_report.py -k docs``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from spywatch.audit import check_collapse, expected_calibration_error
from spywatch.audit_schema import ColumnDrift, NightAudit, Stale, check_audit
from spywatch.report.metrics import calibration_points, roc_points
from spywatch.report.render import render_audit_html, write_audit_html
from spywatch.report.text import drift_severity, fmt, sig
from spywatch.vs_baseline import phrase as vs_phrase
from tests.browser import CHROMIUM, chromium, ui_screenshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "data" / "audit_example.json"
VALIDATION_FAILURE = REPO / "tests" / "data" / "audit_validation_failure.json"
DOCS_PNG = REPO / "docs" / "audit_report.png"
TRAINING_PNG = REPO / "docs" / "training_panel.png"
DRIFT_HREF = "drift_report.html"
# the whole example page at 1280 px wide; the test screenshot uses the 1280x2400 of the CI script
DOCS_WINDOW = "1280,3010"


# ----------------------------------------------------------------------------- audits


@pytest.fixture(scope="module")
def example() -> dict:
    return json.loads(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def validation_failure() -> dict:
    """The night the raw bars fail (the last bar's High below its Low): nothing downstream ran, the
    last good predictions are stale."""
    return json.loads(VALIDATION_FAILURE.read_text())


@pytest.fixture(scope="module")
def collapsed(example: dict) -> dict:
    """A champion that predicts the prior every day, judged by the real collapse check."""
    audit = copy.deepcopy(example)
    rng = np.random.default_rng(0)
    prior = np.array([0.13, 0.31, 0.42])
    proba = prior + rng.normal(0, 0.0004, (60, 3))
    verdict = check_collapse(proba, ["h1", "h3", "h5"], prior, attention_entropy_ratio=0.9991,
                             representation_std=2e-4, pos_to_content_ratio=3.4,
                             feature_shift_std={"vol_5": 0.4, "ret_1": -0.1})
    assert verdict.collapsed, "fixture must describe a collapsed model"
    for row, p in zip(audit["prediction_history"][-60:], proba):
        row.update(h1=round(p[0], 4), h3=round(p[1], 4), h5=round(p[2], 4))
    audit["collapse"] = verdict.to_dict()
    audit["decision"] = {"retrain": True, "reasons": [
        {"code": "collapse", "message": "champion predictions collapsed: collapsed (positional_encoding_dominates)",
         "values": {}}], "notes": []}
    audit["retrain"]["promoted"] = True
    audit["retrain"]["gate"] = {"promote": True, "reasons": ["challenger predictions not collapsed"],
                                "details": {"checks": {"not_collapsed": True, "floor": True}}}
    return audit


# ----------------------------------------------------------------------------- HTML helpers


def page(audit: dict | NightAudit, drift_report_href: str | None = None) -> str:
    """The page of a published audit, read back as the night reads it (``check_audit``)."""
    return render_audit_html(check_audit(audit), drift_report_href=drift_report_href)


class _Text(HTMLParser):
    """Visible text of a page: what a reader sees, without markup, CSS or SVG <title> tooltips."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self._skip += tag in ("style", "script", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script", "title")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def resource_references(html: str) -> list[str]:
    """Every URL the page could load or link to: src/href/srcset/xlink attributes, CSS url() and @import."""
    attrs = re.findall(r"""\b(?:src|href|srcset|xlink:href|action|data)\s*=\s*["']?([^"'\s>]+)""", html, re.I)
    css = re.findall(r"""url\(\s*["']?([^"')]+)""", html, re.I) + re.findall(r"@import\s+([^;]+)", html, re.I)
    return attrs + css


# ----------------------------------------------------------------------------- curve points


def test_roc_points_match_the_rank_auc_and_span_the_unit_square():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.3).astype(float)
    p = np.clip(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.15, 500), 0, 1).round(2)  # many ties
    roc = roc_points(y, p, max_points=10_000)
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    pos, neg = p[y == 1], p[y == 0]
    rank_auc = ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / (len(pos) * len(neg))
    assert np.trapezoid(tpr, fpr) == pytest.approx(rank_auc, abs=1e-3)


def test_roc_points_thin_to_max_points_keep_both_ends_and_drop_unmatured_labels():
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.5).astype(float)
    y[:100] = np.nan
    roc = roc_points(y, rng.random(1000), max_points=25)
    assert len(roc["fpr"]) == len(roc["tpr"]) <= 25
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert roc_points([1, 1, 1], [0.2, 0.5, 0.9]) == {"fpr": [], "tpr": []}  # one class: undefined


def test_calibration_points_bin_like_the_audit_ece():
    rng = np.random.default_rng(3)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(float)
    cal = calibration_points(y, p, bins=10)
    assert sum(cal["count"]) == 400
    pred, obs, count = (np.array(cal[k]) for k in ("pred", "obs", "count"))
    ece_from_points = float((count / count.sum() * np.abs(pred - obs)).sum())
    assert ece_from_points == pytest.approx(expected_calibration_error(y, p, bins=10), abs=1e-3)
    assert calibration_points([0, 1], [0.05, 0.07]) == {"pred": [0.06], "obs": [0.5], "count": [2]}


def test_drift_severity_puts_distances_and_p_values_on_one_scale():
    def test(method: str, threshold: float, score: float | None) -> ColumnDrift:
        return ColumnDrift(method=method, threshold=threshold, score=score, drifted=False)

    assert drift_severity(test("wasserstein", 0.5, 0.25)) == 0.5
    assert drift_severity(test("ks", 1e-4, 1e-2)) == pytest.approx(0.5)
    assert drift_severity(test("t_test", 1e-40, 1e-60)) == pytest.approx(1.5)
    assert drift_severity(test("ks", 0.05, 0.0)) == 2.0
    assert drift_severity(test("wasserstein", 0.0, 0.3)) == 0.0 and drift_severity(test("ks", 0.05, None)) == 0.0


@pytest.mark.parametrize("call", [
    lambda: roc_points([0, 1], [0.5]),
    lambda: roc_points([0, 2], [0.1, 0.9]),
    lambda: roc_points([0, 1], [0.1, 1.5]),
    lambda: roc_points([0, 1], [0.1, 0.9], max_points=1),
    lambda: calibration_points([0, 1], [0.1, 0.9], bins=0),
])
def test_curve_helpers_reject_bad_input_loudly(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- rendering


def badges(a: dict) -> list[str]:
    """The verdict line a reader should see first, from the audit's own values."""
    drift = "Drift drift detected" if a["drift"]["dataset_drift"] else "Drift quiet"
    decision = "Decision retrain" if a["decision"]["retrain"] else "Decision keep champion"
    return ["SYNTHETIC DATA" if a["synthetic"] else "", "Data validation passed", drift,
            f"Model health {a['collapse']['verdict'].replace('_', ' ')}", decision, "Status published"]


def test_example_shows_verdicts_metrics_plots_drift_collapse_decision_and_timings(example):
    html = page(example, drift_report_href=DRIFT_HREF)
    text = visible_text(html)
    retrain = example["retrain"]
    for phrase in (*badges(example), "Tonight's predictions", "Random forest", "Logistic regression",
                   "Prior (constant)", "Open the Evidently drift report", "Prediction drift",
                   "attention entropy ratio", "Promotion gate", "promoted" if retrain["promoted"] else "not promoted",
                   "Stage timings", *[e["event"] for e in example["alerts"]]):
        assert phrase in text, phrase
    for reason in example["decision"]["reasons"]:  # why it retrains, in the code's own words
        assert reason["message"] in text, reason["message"]
    # the health card says how the champion stands against the Random Forest, with the interval
    vs = check_audit(example).vs_baseline
    assert vs.verdict != "not_enough_data" and vs_phrase(vs) in text
    for h, models in example["performance"]["horizons"].items():
        for model in ("champion", "random_forest", "logistic"):
            assert fmt(models[model]["auc"]) in text, (h, model)
        assert fmt(models["champion"]["brier"], 4) in text
    for feature, row in example["drift"]["per_feature"].items():
        assert feature in text and sig(row["score"]) in text
    for h, p in example["predictions"]["latest"].items():
        if h != "date":
            assert f"{100 * p:.1f}%" in text, (h, p)
    # ROC and reliability per horizon, one history chart, the training panel's loss per horizon and gradients
    assert html.count("<svg") == 3 * 2 + 1 + 3 + 1
    assert f'href="{DRIFT_HREF}"' in html
    assert "No predictions published" not in text


def test_the_training_panel_shows_tonights_challengers_verdict_its_losses_against_the_prior_and_gradients(example):
    """The example night retrained: the panel reads the challenger's real training record."""
    from spywatch.report.views import training_panel

    training = example["retrain"]["training"]
    panel = training_panel(check_audit(example))
    assert panel.whose.startswith(f"challenger {example['retrain']['challenger']}") and panel.verdict == training["verdict"]
    assert [c.title for c in panel.loss_charts] == [f"log loss {h} / the prior's" for h in training["horizons"]]
    assert [g for g, _ in panel.groups] == training["members"][0]["groups"]
    n = len(training["members"][0]["epochs"])
    # per horizon: the prior's line, then each member's training and holdout curves, one point per epoch
    assert all(len(c.lines) == 1 + 2 * len(training["members"]) for c in panel.loss_charts)
    assert all(len(line.points.split()) == n for c in panel.loss_charts for line in c.lines[1:])
    assert len(panel.grad_chart.lines) == len(panel.groups) and len(panel.readings) == len(training["members"])
    text = visible_text(page(example))
    assert f"Training audit · {panel.whose}" in text and "dashed: the prior's loss (1.0)" in text
    for line in panel.readings:
        assert line in text
    # a night without a retrain shows the champion's record; an old champion has none
    quiet = copy.deepcopy(example)
    quiet["retrain"] = None
    quiet["champion"]["training"] = training
    assert training_panel(check_audit(quiet)).whose.startswith(f"champion {example['model_version']}")
    quiet["champion"]["training"] = None
    assert training_panel(check_audit(quiet)) is None
    assert "No training audit recorded" in visible_text(page(quiet))


def test_the_report_names_its_ticker_in_its_title_and_target(example):
    assert "P(SPY gains ≥ 1% within h sessions)" in visible_text(page(example))
    qqq = {**copy.deepcopy(example), "ticker": "QQQ"}
    html = page(qqq)
    text = visible_text(html)
    assert "spywatch nightly audit · QQQ · session" in text and "P(QQQ gains ≥ 1% within h sessions)" in text
    assert "<title>spywatch audit QQQ" in html
    assert text.count("SPY") == text.count("Calibrated on SPY")  # only where SPY is meant: the decay test's calibration


def test_validation_failure_night_shows_failures_and_stale_predictions_first(validation_failure):
    audit = validation_failure
    html = page(audit)
    text = visible_text(html)
    assert audit["failure"]["kind"] == "raw_bars_invalid" and audit["stale"]["stale"]
    assert "Data validation failed" in text and "Status stale" in text
    last_good = audit["stale"]["last_good_session"]
    assert f"No predictions published tonight; last good predictions from {last_good} are stale." in text
    failures = audit["validation"]["raw_bars"]["failures"]
    assert failures and any("high" in str(f) for f in failures)
    for line in failures[:5]:
        words = re.sub(r"\s+", " ", str(line))[:40]
        assert words in text, words
    assert text.index("Data validation failed") < text.index("Performance against baselines")
    for degraded in ("Drift was not measured tonight.", "No collapse check tonight",
                     "No performance evaluation in this audit", "No decision was taken",
                     "No retrain tonight"):
        assert degraded in text, degraded
    assert html.count("<svg") == (1 if audit["prediction_history"] else 0)
    assert "Tonight's predictions" not in text


def test_collapsed_night_names_the_cause_and_the_flat_horizons(collapsed):
    text = visible_text(page(collapsed))
    assert "Model health collapsed" in text
    assert "cause: positional_encoding_dominates" in text
    assert "horizons h1, h3, h5" in text
    assert "prediction std 0.0004" in text  # the real finding sentence from audit.check_collapse
    assert "3.40" in text and "promoted" in text


@pytest.mark.parametrize("audit", [{"session": "2024-06-28", "run_id": "r", "status": "failed"},
                                   {"session": "2024-06-28", "run_id": "r", "status": "failed", "validation": {},
                                    "drift": None, "collapse": None, "performance": None, "decision": None,
                                    "retrain": None, "predictions": None, "prediction_history": [], "stale": None,
                                    "alerts": [], "timings": {}}])
def test_an_almost_empty_audit_still_renders(audit):
    text = visible_text(page(audit))
    assert "not run" in text and "No predictions published tonight" in text


def test_the_page_takes_the_typed_audit_not_the_json(example):
    with pytest.raises(ValueError, match="NightAudit"):
        render_audit_html(example)


def test_sections_with_null_insides_degrade_to_dashes_and_notes(example):
    audit = copy.deepcopy(example)
    audit["performance"] = {"window": [], "n": 0, "roc": None, "calibration": {"h1": {}},
                            "horizons": {"h1": {"champion": {"auc": None, "brier": float("nan"), "n": 12}}}}
    audit["drift"].update(prediction_drift=None, per_feature={})
    audit["collapse"]["evidence"] = {}
    audit["retrain"] = {"challenger": None, "promoted": False, "gate": None}
    text = visible_text(page(audit))
    assert "PatchTST (champion) — — —" in text  # AUC, PR-AUC and Brier unknown, not zero
    assert "ROC undefined" in text and "no calibration points" in text
    assert "Prediction drift · the window's predictions against the champion's validation predictions" in text
    assert "nor retrains): not measured" in text and "No feature-shift measurement." in text
    assert "not promoted" in text


def test_the_drift_card_says_when_the_predictions_moved_under_quiet_inputs(example):
    """Quiet inputs with a drifted prediction column: the card says both, the chips say against what
    and from which threshold, and the collapse table's AUC says on how many sessions of which window."""
    audit = copy.deepcopy(example)
    audit["drift"].update(dataset_drift=False, training_drift=False, regime_drift=False, drift_reasons=[])
    h1 = audit["drift"]["prediction_drift"]["h1"]
    h1.update(drifted=True, score=1.5, threshold=1.2,
              threshold_basis="99% of the 191 60-session stretches of the validation predictions sit within 1.2 of them")
    for h in ("h3", "h5"):
        audit["drift"]["prediction_drift"][h]["drifted"] = False
    audit["collapse"]["evidence"]["auc_sessions"] = {"h1": 55, "h3": 53, "h5": 51}
    html = page(audit)
    text = visible_text(html)
    assert "inputs quiet · predictions shifted (h1)" in text
    assert "h1: 99% of the 191 60-session stretches of the validation predictions sit within 1.2 of them" in text
    assert "AUC · window sessions" in text and re.search(r"h1 .* 55 h3", text)
    assert "Different sessions, different numbers." in text


def test_the_page_loads_nothing_and_links_only_the_relative_drift_report(example, validation_failure, collapsed):
    for audit in (example, validation_failure, collapsed):
        html = page(audit, drift_report_href=DRIFT_HREF)
        assert "http://" not in html and "https://" not in html
        assert "<script" not in html.lower() and "<link" not in html.lower()
        assert set(resource_references(html)) <= {DRIFT_HREF}
    for bad in ("https://example.com/drift.html", "//cdn.example.com/d.html", "file:///tmp/drift.html"):
        with pytest.raises(ValueError, match="relative"):
            page(example, drift_report_href=bad)


def test_data_from_the_audit_is_escaped(validation_failure):
    audit = copy.deepcopy(validation_failure)
    audit["validation"]["raw_bars"]["failures"] = ["<script>alert(1)</script> in column <b>close</b>"]
    html = page(audit)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_write_audit_html_replaces_the_file_atomically(example, tmp_path):
    target = tmp_path / "run" / "audit.html"
    target.parent.mkdir()
    target.write_text("old")
    assert write_audit_html(check_audit(example), target, drift_report_href=DRIFT_HREF) == target
    assert target.read_text() == page(example, drift_report_href=DRIFT_HREF)
    assert [p.name for p in target.parent.iterdir()] == ["audit.html"]  # no temp file left behind


# ----------------------------------------------------------------------------- headless Chromium


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} missing: install it with `apt-get update && apt-get install -y chromium`")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def example_page(example, tmp_path_factory) -> Path:
    return write_audit_html(check_audit(example), tmp_path_factory.mktemp("report") / "audit.html",
                            drift_report_href=DRIFT_HREF)


@needs_chromium
def test_chromium_renders_the_verdicts_numbers_and_svg_plots(example, example_page, tmp_path):
    dom = chromium("--dump-dom", example_page.as_uri(), profile=tmp_path / "profile").stdout
    text = visible_text(dom)
    for phrase in badges(example):
        assert phrase in text, phrase
    h1 = example["performance"]["horizons"]["h1"]
    assert fmt(h1["champion"]["auc"]) in text and fmt(h1["random_forest"]["auc"]) in text
    assert len(re.findall(r"<svg\b", dom)) == 11
    assert len(re.findall(r"<polyline\b", dom)) >= 6 and "<circle" in dom


@needs_chromium
def test_chromium_screenshot_is_a_non_empty_png(example_page, tmp_path):
    png = tmp_path / "audit.png"
    chromium(f"--screenshot={png}", "--window-size=1280,2400", example_page.as_uri(), profile=tmp_path / "profile")
    assert png_size(png) == (1280, 2400)
    assert png.stat().st_size > 100_000  # a blank page compresses to a few kB


@needs_chromium
@pytest.mark.skipif(not os.environ.get("SPYWATCH_UPDATE_DOCS_SCREENSHOT"),
                    reason="set SPYWATCH_UPDATE_DOCS_SCREENSHOT=1 to regenerate docs/audit_report.png and "
                           "docs/training_panel.png")
def test_update_docs_screenshot(example_page, tmp_path):
    png = tmp_path / "audit.png"
    chromium(f"--screenshot={png}", f"--window-size={DOCS_WINDOW}", example_page.as_uri(),
             profile=tmp_path / "profile")
    DOCS_PNG.parent.mkdir(exist_ok=True)
    shutil.copyfile(png, DOCS_PNG)
    assert png_size(DOCS_PNG)[0] == 1280
    # the training panel alone, wherever it sits on the page
    ui_screenshot(example_page.as_uri(), TRAINING_PNG, tmp_path / "profile-training", wait_for="Training audit",
                  size=(1280, 1200), clip="#training")
    width, height = png_size(TRAINING_PNG)
    assert 900 <= width <= 1280 and height > 300


def test_regime_check_is_rendered():
    audit = json.loads(EXAMPLE.read_text())
    audit["drift"]["regime"] = {
        "dataset_drift": True, "n_drifted": 3, "n_features": 7, "min_drifted_features": 3,
        "per_feature": {"vol_5": {"method": "t_test", "threshold": 1e-20, "score": 1e-30, "drifted": True},
                        "gap": {"method": "wasserstein", "threshold": 0.9, "score": 0.2, "drifted": False}},
        "recent": {"start": "2023-04-01", "end": "2024-03-28", "rows": 250}}
    html = page(audit, "drift.html")
    assert "Regime check" in html and "regime change" in html and "3 of 7 drifted" in html


def test_numbers_and_records_are_written_for_people_not_as_json(example, validation_failure):
    from spywatch.report.text import fmt, readable
    from spywatch.report.views import status_badge

    assert fmt(-0.0004) == "0.000" and fmt(-0.0006) == "-0.001" and fmt(None) == "—"
    assert readable({"champion": None, "h3": 0.5783928742457619, "checks": {"floor": True}, "n": 12500}) \
        == "champion —; h3 0.5784; checks (floor yes); n 12,500"
    text = visible_text(page(example))
    gate = example["retrain"]["gate"]["details"]
    assert "null" not in text and '{"' not in text and "0.5783928742457619" not in text
    assert f"mean auc {readable(gate['challenger']['mean_auc'])}" in readable(gate["challenger"])
    # a failure before anything was ever published says so, instead of "last good None"
    first = {"stale": True, "stale_since": "2024-06-28", "last_good_session": None, "reason": "x"}
    assert status_badge("validation_failed", Stale(**first), None).detail.endswith("none published before")
    assert "None" not in visible_text(page({**validation_failure, "stale": first}))
