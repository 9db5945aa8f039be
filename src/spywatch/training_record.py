"""The training evidence, recorded while a model trains (the torch half of ``training_audit``).

``TrainingRecorder`` answers the training half of the original audit's checklist for every model
the training loop fits (each ensemble member, on either training path): before the first step,
the untrained model's prediction spread, log loss and pos/content ratio; per epoch, the train and
validation log loss per horizon beside the loss of predicting the training prior, the gradient
norm per parameter group (before clipping) and the update-to-weight ratio per group; at the end,
how far each group moved from its initial weights. ``training_audit`` reads it into a verdict.

Parameter groups: ``patch_embedding`` (the patch projection, and RevIN when on),
``positional_encoding``, ``layer_<i>`` (each encoder layer), ``head`` (the final norm and the
classification head).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def group_of(name: str) -> str:
    """The parameter group of a parameter of ``PatchTSTClassifier`` or ``PatchTSTStack``."""
    if name.startswith(("patch_proj.", "patch_w", "patch_b", "revin")):
        return "patch_embedding"
    if name == "pos":
        return "positional_encoding"
    m = re.match(r"layers\.(\d+)\.", name)
    if m:
        return f"layer_{m.group(1)}"
    return "head"


def parameter_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        groups.setdefault(group_of(name), []).append((name, p))
    order = ["patch_embedding", "positional_encoding"] + sorted(
        (g for g in groups if g.startswith("layer_")), key=lambda g: int(g.split("_")[1])) + ["head"]
    return {g: groups[g] for g in order if g in groups}


def freeze(model: nn.Module, groups: tuple[str, ...]) -> None:
    """Stop training the named groups (``requires_grad=False``); an unknown name is refused."""
    if not groups:
        return
    known = parameter_groups(model)
    unknown = sorted(set(groups) - set(known))
    if unknown:
        raise ValueError(f"cannot freeze {unknown}: the groups are {list(known)}")
    for g in groups:
        for _, p in known[g]:
            p.requires_grad_(False)


def prior_log_loss(y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(H,) log loss of predicting ``prior`` for every window of ``y`` (N, H)."""
    p = np.clip(np.asarray(prior, dtype="float64"), 1e-6, 1 - 1e-6)
    y = np.asarray(y, dtype="float64")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=0)


def spread(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)``, the first and the last included."""
    return np.linspace(0, n - 1, min(n, k)).astype(int)


@torch.no_grad()
def init_readings(member: nn.Module, X: np.ndarray, y: np.ndarray) -> dict:
    """What the untrained model predicts on 1,024 windows spread evenly over the fit span: the
    spread and mean of its probabilities, its log loss per horizon, and its pos/content ratio. Eval
    mode: no dropout, so no random numbers are drawn (the training that follows is unchanged)."""
    pick = spread(len(X), 1024)
    X, y = X[pick], y[pick]
    sample = torch.from_numpy(np.ascontiguousarray(X))
    was = member.training
    member.eval()
    logits = member(sample)
    member.train(was)
    proba = torch.sigmoid(logits).numpy()
    loss = log_loss_per_horizon(logits.unsqueeze(0), torch.from_numpy(y))[0] / len(sample)
    return {"pred_std": [float(s) for s in proba.std(axis=0)], "pred_mean": [float(s) for s in proba.mean(axis=0)],
            "loss": [float(v) for v in loss], "pos_to_content": float(member.pos_to_content_ratio(sample))}


@torch.no_grad()
def stack_init_readings(stack: nn.Module, samples: list[tuple[np.ndarray, np.ndarray]], job_of: np.ndarray,
                        budget: int = 2**16) -> list[dict]:
    """:func:`init_readings` for every slot of a ``PatchTSTStack`` at once, on its device: slot k
    read on its job's 1,024 windows spread over ``samples[job_of[k]]`` (X, y), the whole stack
    going forward together in chunks of about ``budget`` windows over all slots. What a fleet of
    500 tickers would otherwise spend on 1,000 forwards on the host's CPU before training."""
    device = next(stack.parameters()).device
    picks = [spread(len(X), 1024) for X, _ in samples]
    n = np.array([len(p) for p in picks])
    width = int(n.max())
    X = torch.zeros((len(samples), width, *samples[0][0].shape[1:]), dtype=torch.float32)
    y = torch.zeros((len(samples), width, samples[0][1].shape[1]), dtype=torch.float32)
    for j, ((Xj, yj), p) in enumerate(zip(samples, picks)):
        X[j, :len(p)], y[j, :len(p)] = torch.from_numpy(Xj[p]), torch.from_numpy(yj[p])
    X, y, slot_job = X.to(device), y.to(device), torch.as_tensor(job_of, device=device)
    K, H = len(job_of), y.shape[-1]
    n_slot = torch.as_tensor(n[job_of], device=device, dtype=torch.float64)
    s1, s2, loss = (torch.zeros(K, H, dtype=torch.float64, device=device) for _ in range(3))
    content = torch.zeros(K, dtype=torch.float64, device=device)
    was = stack.training
    stack.eval()
    step = max(1, budget // K)
    for c in range(0, width, step):
        xc, yc = X[slot_job, c:c + step], y[slot_job, c:c + step]  # (K, w, L, C), (K, w, H)
        mask = (torch.arange(c, c + xc.shape[1], device=device) < n_slot.unsqueeze(1)).double()  # (K, w)
        out = stack.forward_with_details(xc)
        logits = out.logits.double()
        p = torch.sigmoid(logits)
        s1 += (p * mask.unsqueeze(-1)).sum(dim=1)
        s2 += (p.square() * mask.unsqueeze(-1)).sum(dim=1)
        loss += (log_loss_per_element(logits, yc.double()) * mask.unsqueeze(-1)).sum(dim=1)
        content += (out.patch_embedding.double().norm(dim=-1).mean(dim=(2, 3)) * mask).sum(dim=1)
    stack.train(was)
    nk = n_slot.unsqueeze(1)
    mean = s1 / nk
    std = (s2 / nk - mean.square()).clamp_min(0).sqrt()
    loss = loss / nk
    pos = stack.pos.detach().double().norm(dim=-1).reshape(K, -1).mean(dim=1)
    ratio = pos / (content / n_slot).clamp_min(1e-12)
    mean, std, loss, ratio = (t.cpu().numpy() for t in (mean, std, loss, ratio))
    return [{"pred_std": [float(v) for v in std[k]], "pred_mean": [float(v) for v in mean[k]],
             "loss": [float(v) for v in loss[k]], "pos_to_content": float(ratio[k])} for k in range(K)]


def log_loss_per_element(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Log loss of each prediction: (..., B, H) -> (..., B, H)."""
    return F.binary_cross_entropy_with_logits(logits.float(), y.expand_as(logits), reduction="none")


def log_loss_per_horizon(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed (not mean) log loss per horizon over the batch: (..., B, H) -> (..., H)."""
    return log_loss_per_element(logits, y).sum(dim=-2)


class TrainingRecorder:
    """Collects the evidence for ``k`` models trained together (``k`` = 1 on the reference path,
    the stack's members on the stacked path: every parameter has the member on its leading axis).

    Call ``after_backward`` after ``loss.backward()`` (before clipping), ``before_step`` /
    ``after_step`` around ``opt.step()``, ``add_train_loss`` per batch and ``end_epoch`` per epoch.
    The per-step work is a few reductions per parameter, kept on the device until the epoch ends.
    """

    def __init__(self, model: nn.Module, k: int, stacked: bool, prior: np.ndarray, enabled: bool = True) -> None:
        """``prior``: (H,) the training prior of all ``k`` models, or (k, H) each model's own (a fleet
        stack's slots train on different tickers)."""
        self.enabled, self.k, self.stacked = enabled, k, stacked
        self.groups = parameter_groups(model)
        self.names = list(self.groups)
        prior = np.asarray(prior, dtype="float64")
        self.priors = np.broadcast_to(prior, (k, prior.shape[-1]))
        self.members: list[dict] = [{"epochs": []} for _ in range(k)]
        if not enabled:
            return
        self._params = [[p for _, p in self.groups[g]] for g in self.names]
        self._init = [[p.detach().clone() for p in ps] for ps in self._params]
        self._prev: list[list[torch.Tensor]] | None = None
        self._reset_epoch()

    def _per_member(self, t: torch.Tensor) -> torch.Tensor:
        """Squared norm per member of a parameter-shaped tensor: (k,)."""
        t = t.detach().float()
        return t.reshape(self.k, -1).pow(2).sum(dim=1) if self.stacked else t.pow(2).sum().reshape(1)

    def _group_sq(self, tensors: list[list[torch.Tensor | None]]) -> torch.Tensor:
        """(G, k) squared norms of per-group tensor lists (a missing gradient counts 0)."""
        rows = []
        for ts in tensors:
            parts = [self._per_member(t) for t in ts if t is not None]
            rows.append(torch.stack(parts).sum(dim=0) if parts else torch.zeros(self.k, device=self._device()))
        return torch.stack(rows)

    def _device(self) -> torch.device:
        return self._params[0][0].device

    def _reset_epoch(self) -> None:
        G, dev = len(self.names), self._device()
        self._grad = torch.zeros(G, self.k, device=dev)
        self._ratio = torch.zeros(G, self.k, device=dev)
        self._steps = torch.zeros(self.k, device=dev)
        self._train_loss = torch.zeros(self.k, self.priors.shape[1], device=dev, dtype=torch.float64)
        self._train_n = torch.zeros(self.k, device=dev, dtype=torch.float64)

    def record_init(self, readings: list[dict]) -> None:
        for m, r in zip(self.members, readings):
            m["init"] = r

    def after_backward(self) -> None:
        if self.enabled:
            self._grad += self._group_sq([[p.grad for p in ps] for ps in self._params]).sqrt()

    def before_step(self) -> None:
        if self.enabled:
            self._prev = [[p.detach().clone() for p in ps] for ps in self._params]

    def after_step(self, active: torch.Tensor | None = None) -> None:
        """``active`` (k,) bool: the models that took this step (a fleet stack's slot whose ticker has
        run out of windows this epoch sits it out, and its readings average over its own steps)."""
        if not self.enabled or self._prev is None:
            return
        delta = self._group_sq([[p.detach() - q for p, q in zip(ps, qs)] for ps, qs in zip(self._params, self._prev)])
        weight = self._group_sq(self._prev)
        self._ratio += (delta / weight.clamp_min(1e-30)).sqrt()
        self._steps += 1 if active is None else active.to(self._steps.dtype)

    def add_train_loss(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """``logits`` (k, B, H) (or (B, H) when k = 1) and labels (B, H) or (k, B, H) of one batch;
        ``mask`` (k, B): the samples that count (a fleet stack pads each slot's batch to one width)."""
        if self.enabled:
            with torch.no_grad():
                lg = logits.detach().reshape(self.k, -1, logits.shape[-1])
                yy = y.reshape(-1, *lg.shape[1:]) if y.dim() == 3 else y
                if mask is None:
                    self._train_loss += log_loss_per_horizon(lg, yy).double()
                    self._train_n += lg.shape[1]
                else:
                    self._train_loss += (log_loss_per_element(lg, yy) * mask.unsqueeze(-1)).sum(dim=-2).double()
                    self._train_n += mask.sum(dim=-1).double()

    def end_epoch(self, epoch: int, val_log_loss: np.ndarray | None, val_source: str | None) -> None:
        """``val_log_loss``: (k, H) mean log loss on the validation (or monitor) windows, or None."""
        if not self.enabled:
            return
        steps = self._steps.clamp_min(1)
        grad = (self._grad / steps).cpu().numpy()
        ratio = (self._ratio / steps).cpu().numpy()
        train = (self._train_loss / self._train_n.clamp_min(1).unsqueeze(-1)).cpu().numpy()
        for i, m in enumerate(self.members):
            m["epochs"].append({
                "epoch": epoch,
                "train_loss": [float(v) for v in train[i]],
                "val_loss": None if val_log_loss is None else [float(v) for v in val_log_loss[i]],
                "grad_norm": {g: float(grad[j, i]) for j, g in enumerate(self.names)},
                "update_ratio": {g: float(ratio[j, i]) for j, g in enumerate(self.names)},
            })
            m["val_source"] = val_source
        self._reset_epoch()

    def finish(self, val_y: list[np.ndarray | None], train_y: list[np.ndarray], fit_loss: np.ndarray,
               fit_y: list[np.ndarray]) -> list[dict]:
        """Each member's evidence (JSON-ready): its epochs, init readings, weight change per group,
        the prior's loss on its training and validation windows, and ``fit_loss`` (k, H): the
        returned model's eval-mode log loss on its training windows ``fit_y``, beside the prior's
        there. ``val_y``, ``train_y``, ``fit_y``: one label array per model (the same array k times
        when the models share their windows)."""
        init = [[q.to(p.device) for p, q in zip(ps, qs)] for ps, qs in zip(self._params, self._init)]
        moved = [[p.detach() - q for p, q in zip(ps, qs)] for ps, qs in zip(self._params, init)]
        change = np.sqrt(self._group_sq(moved).cpu().numpy() / np.maximum(self._group_sq(init).cpu().numpy(), 1e-30))
        floats = lambda a: [float(v) for v in a]  # noqa: E731
        out = []
        for i, m in enumerate(self.members):
            prior, vy = self.priors[i], val_y[i]
            out.append({**m, "groups": self.names, "prior": floats(prior),
                        "weight_change": {g: float(change[j, i]) for j, g in enumerate(self.names)},
                        "prior_loss": {"train": floats(prior_log_loss(train_y[i], prior)),
                                       "val": floats(prior_log_loss(vy, prior)) if vy is not None and len(vy) else None,
                                       "fit_sample": floats(prior_log_loss(fit_y[i], prior))},
                        "fit_loss": floats(fit_loss[i]), "fit_sample": int(len(fit_y[i]))})
        return out
