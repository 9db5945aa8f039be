"""The training half of the original audit: a verdict with named findings on the evidence that
``training_record.TrainingRecorder`` collects while a model trains.

The original audit worked through a checklist by hand: what does an untrained model predict; do
the weights change; do gradients reach every layer; does the loss get below what predicting the
class prior gives; is the positional encoding larger than the content. ``training_verdict`` reads
each model's record into findings with their numbers, against ``TrainingThresholds`` (chosen and
stated there); ``training_section`` is what a model version stores under ``metrics["training"]``.
Plain Python (no torch): the pipeline, the report and the CLI read it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from spywatch.audit_schema import Epoch, InitEvidence, MemberEvidence, Training

HEALTHY = "healthy"
# Every finding that fires is listed; the verdict names the first in this order, which runs from
# the most specific cause to the symptom: a NaN loss makes every other reading meaningless; one
# group's exploding gradient takes the whole clipped update; a group no gradient reaches also
# does not update; weights that do not move leave the model at its init; a positional encoding
# louder than the content at init can keep the model from reading it; and a loss that never gets
# below the prior's is what all of them end in (the original audit met it first, "the model IS
# learning: it learns the class prior", and reasoned back).
FINDINGS = ("diverged", "exploding_gradients", "dead_layers", "no_update", "pos_dominates_at_init",
            "learned_prior_only")


@dataclass(frozen=True)
class TrainingThresholds:
    """When a training reading becomes a finding.

    ``prior_margin``: the returned model's log loss on its training windows (eval mode, 2,048 of
    them spread over the fit span) must be at least this fraction below the loss of predicting the
    training prior, in at least one horizon; a model that is not learned the prior only (the
    original "it learns to predict the class prior"). Read on the training windows, where the prior
    is the best constant: on a holdout whose positive rate moved, any constant nearer the new rate
    beats the training prior (a model fit to shuffled labels came out 10 % below it on 2014's h1),
    so the holdout's loss is recorded and shown but cannot tell. Measured
    (tests/model/test_training_audit.py, bench/results/training_audit.md): the default on real SPY
    5-9 % below in its best horizon, the original study's choices 1.7-5 %, tiny test models after
    2-3 epochs 1.3-4 %; inputs without information and a learning rate of 0 at most 0.2 %; labels
    shuffled against the inputs 0.2-0.4 % at retrain scale and 0.7-1.0 % on the tests' smaller fit
    (noise memorised in-sample).
    ``max_grad_ratio``: a group whose mean gradient norm is above this multiple of the median
    group's has exploding gradients (healthy groups sit within 30x of the median; the original
    study's unscaled inputs, fitted through 2021, put the first encoder layer at 2e8x).
    ``dead_grad_abs`` / ``dead_grad_rel``: a group whose mean gradient norm is below 1e-8, or below
    1e-6 of the median group's, receives no gradient (a frozen or disconnected part, or one drowned
    by unscaled inputs: 1e-9 for the original study's positional encoding).
    ``min_weight_change``: a group whose weights moved by less than this fraction of their norm over
    the whole training did not update (learning rate 0, frozen; a healthy one moves by 5-50 %).
    ``max_pos_to_content``: the positional encoding's norm above the patch embeddings' at init (the
    original ``randn`` encoding gave about 2; the paper's uniform +-0.02 about 0.05).
    ``max_loss_to_prior``: a finite training loss that rises above this multiple of both the prior's
    and the untrained model's own loss also counts as diverged (blown up without reaching inf; a
    learning rate of 10 gives ~10^4 times the prior's in its first epoch). A model whose loss was
    that high from the start (saturated outputs at init) has not diverged: it never learned.
    """

    prior_margin: float = 0.01
    dead_grad_abs: float = 1e-8
    dead_grad_rel: float = 1e-6
    max_grad_ratio: float = 1e3
    min_weight_change: float = 1e-6
    max_pos_to_content: float = 1.0
    max_loss_to_prior: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- the verdict


@dataclass
class TrainingVerdict:
    verdict: str  # "healthy" or the first finding's name
    findings: list[dict] = field(default_factory=list)  # {"finding", "member", "text", numbers...}
    thresholds: dict = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _mean_text(values: list, fmt: str) -> str:
    """The mean of the finite readings in ``fmt``, or "-" when there is none."""
    finite = [v for v in values if _finite(v)]
    return format(float(np.mean(finite)), fmt) if finite else "-"


def _val_gains(epochs: list[Epoch], prior_val: list[float] | None, names: list[str]) -> dict | None:
    """Per horizon, 1 - best validation loss / the training prior's loss on those windows."""
    if not prior_val or not epochs or epochs[0].val_loss is None:
        return None
    return {h: 1.0 - min(e.val_loss[j] for e in epochs) / prior_val[j] for j, h in enumerate(names)}


def member_findings(ev: MemberEvidence, names: list[str], t: TrainingThresholds = TrainingThresholds()) -> list[dict]:
    """The findings of one model's evidence, each with its numbers and one sentence."""
    out: list[dict] = []
    epochs, init = ev.epochs, ev.init or InitEvidence()
    prior_train = ev.prior_loss.train or [float("nan")] * len(names)
    prior_val = ev.prior_loss.val
    # diverged: a non-finite loss or gradient, or a finite loss blown far above the prior's
    bad = [e.epoch for e in epochs
           if not all(_finite(v) for v in e.train_loss + (e.val_loss or []) + list(e.grad_norm.values()))]
    start = init.loss or [0.0] * len(names)
    blown = [e.epoch for e in epochs if e.epoch not in bad and any(
        v > t.max_loss_to_prior * max(p, s0) for v, p, s0 in zip(e.train_loss, prior_train, start) if _finite(p))]
    if bad or blown:
        first = (bad or blown)[0]
        what = "NaN or inf in the loss or gradients" if bad else \
            f"training loss above {t.max_loss_to_prior:g}x the prior's"
        out.append({"finding": "diverged", "epoch": first, "epochs": bad or blown,
                    "text": f"diverged at epoch {first}: {what}"})
    # learned_prior_only: the returned model's eval-mode loss on its training windows, where the
    # prior is the best constant, not meaningfully below the prior's (see TrainingThresholds)
    fit, prior_fit = ev.fit_loss, ev.prior_loss.fit_sample
    if fit and prior_fit and not bad:
        gains = [1.0 - b / p if p > 0 else float("nan") for b, p in zip(fit, prior_fit)]
        if not any(g >= t.prior_margin for g in gains if _finite(g)):
            parts = ", ".join(f"{h} {b:.4g} vs prior {p:.4f} ({f'{100 * g:+.1f}%' if abs(g) < 10 else f'{b / p:.3g}x'})"
                              for h, b, p, g in zip(names, fit, prior_fit, gains))
            worst = max(b / p for b, p in zip(fit, prior_fit))
            note = f"; up to {worst:.0f}x the prior's: saturated outputs, not even the prior" if worst >= 2 else ""
            out.append({"finding": "learned_prior_only", "gain_vs_prior": dict(zip(names, gains)),
                        "val_gain_vs_prior": _val_gains(epochs, prior_val, names),
                        "text": f"log loss on its training windows not {100 * t.prior_margin:g}% below the prior's "
                                f"(the best constant there) in any horizon: {parts}{note}"})
    # dead_layers / exploding_gradients: a group far below or far above the typical (median) group
    if epochs:
        mean = {g: float(np.mean([e.grad_norm[g] for e in epochs])) for g in ev.groups}
        finite = [v for v in mean.values() if _finite(v)]
        median = float(np.median(finite)) if finite else 0.0
        floor = max(t.dead_grad_abs, t.dead_grad_rel * median)
        dead = [g for g, v in mean.items() if _finite(v) and v < floor]
        if dead:
            out.append({"finding": "dead_layers", "groups": dead, "grad_norm": {g: mean[g] for g in dead},
                        "median": median,
                        "text": "no gradient reaches " + ", ".join(f"{g} (mean norm {mean[g]:.2g})" for g in dead)
                                + f"; the median group's {median:.2g}"})
        loud = [g for g, v in mean.items() if _finite(v) and median > 0 and v > t.max_grad_ratio * median]
        if loud and not bad:
            out.append({"finding": "exploding_gradients", "groups": loud, "grad_norm": {g: mean[g] for g in loud},
                        "median": median,
                        "text": "gradients explode in " + ", ".join(f"{g} (mean norm {mean[g]:.2g})" for g in loud)
                                + f", over {t.max_grad_ratio:g}x the median group's {median:.2g}: clipping the "
                                  "total norm to 1 leaves the other groups almost no update"})
    # no_update: weights unchanged over the whole training
    change = ev.weight_change
    still = [g for g, v in change.items() if _finite(v) and v < t.min_weight_change]
    if still:
        out.append({"finding": "no_update", "groups": still, "weight_change": {g: change[g] for g in still},
                    "text": "weights unchanged in " + ", ".join(f"{g} (moved {change[g]:.1e} of its norm)"
                                                               for g in still)})
    # pos_dominates_at_init
    ratio = init.pos_to_content
    if _finite(ratio) and ratio > t.max_pos_to_content:
        out.append({"finding": "pos_dominates_at_init", "pos_to_content": ratio,
                    "text": f"at init the positional encoding is {ratio:.2f}x the patch embeddings "
                            f"(limit {t.max_pos_to_content:g})"})
    return sorted(out, key=lambda f: FINDINGS.index(f["finding"]))


def training_verdict(evidence: list[dict], names: list[str],
                     thresholds: TrainingThresholds = TrainingThresholds()) -> TrainingVerdict:
    """The verdict over every member (``evidence``: each member's record as the recorder wrote it):
    healthy only when each member is."""
    findings = []
    for i, ev in enumerate(evidence):
        findings += [{**f, "member": i} for f in member_findings(MemberEvidence.model_validate(ev), names, thresholds)]
    findings.sort(key=lambda f: (FINDINGS.index(f["finding"]), f["member"]))
    return TrainingVerdict(verdict=findings[0]["finding"] if findings else HEALTHY, findings=findings,
                           thresholds=thresholds.to_dict())


def training_section(evidence: list[dict | None], names: list[str],
                     thresholds: TrainingThresholds = TrainingThresholds()) -> dict | None:
    """What a model version stores under ``metrics["training"]``: the verdict and the evidence."""
    if not evidence or any(e is None for e in evidence):
        return None
    verdict = training_verdict(evidence, names, thresholds)
    return {**verdict.to_dict(), "horizons": list(names), "members": evidence}


def summary_line(section: Training | None) -> str:
    """One line: the verdict and its first finding (or the margins a healthy model reached)."""
    if section is None:
        return "training audit: not recorded"
    if section.verdict == HEALTHY:
        return "training: healthy"
    f = section.findings[0]
    more = len(section.findings) - 1
    return f"training: {section.verdict} (member {f['member']}: {f['text']})" + (f"; +{more} more" if more else "")


def finding_line(finding: dict, who: str | None = None) -> str:
    """One finding as a sentence: ``member 1: dead_layers: no gradient reaches ...`` (``who``
    names the model instead, e.g. ``seed 2`` where each section holds one member)."""
    return f"{who or 'member ' + str(finding['member'])}: {finding['finding']}: {finding['text']}"


def member_lines(section: Training, who: list[str] | None = None) -> list[str]:
    """Per member, the readings behind the verdict, one line each (``models show``, ``evaluate``);
    ``who`` names the members (default ``member <i>``)."""
    names = section.horizons
    lines = []
    for i, ev in enumerate(section.members):
        fit, prior = ev.fit_loss or [], ev.prior_loss.fit_sample or []
        loss = ", ".join(f"{h} {a:.4f} vs {b:.4f} ({100 * (a / b - 1):+.1f}%)" for h, a, b in zip(names, fit, prior)
                         if _finite(a) and b)
        epochs = ev.epochs
        # a reading may be null in an audit.json (a non-finite value written as JSON null): shown as "-"
        grads = ", ".join(f"{g} {_mean_text([e.grad_norm.get(g) for e in epochs], '.2g')}" for g in ev.groups) \
            if epochs else "-"
        ratio = ", ".join(f"{g} {_mean_text([e.update_ratio.get(g) for e in epochs], '.1e')}" for g in ev.groups) \
            if epochs else "-"
        change = ev.weight_change
        moved = ", ".join(f"{g} {_mean_text([change[g]], '.2g')}" for g in ev.groups or change if g in change)
        init = ev.init or InitEvidence()
        pos = init.pos_to_content if _finite(init.pos_to_content) else float("nan")
        spread = "/".join(f"{v:.3f}" if _finite(v) else "-" for v in init.pred_std)
        lines.append(f"{who[i] if who else f'member {i}'}: log loss on its training windows vs the prior's: {loss or '-'}; at init "
                     f"pos/content {pos:.3g}, P spread {spread or '-'}; "
                     f"mean grad norm {grads}; mean update/weight per step {ratio}; weights moved {moved}")
    return lines
