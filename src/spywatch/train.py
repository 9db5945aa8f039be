"""Training loop for the PatchTST classifier (no Prefect, no files): windows in, fitted model out."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from spywatch.model import (PatchTSTClassifier, PatchTSTConfig, PatchTSTEnsemble, PatchTSTStack,
                            attention_entropy_ratio, stackable, start_at_prior)
from spywatch.training_record import (TrainingRecorder, freeze, init_readings, log_loss_per_element,
                                      log_loss_per_horizon, spread, stack_init_readings)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 25
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.05
    patience: int = 5  # epochs without a better validation loss before stopping
    warmup_epochs: int = 2  # linear warm-up, then cosine decay to lr/20
    pos_weight: bool = False  # per-horizon neg/pos weight; helps AUC a little, un-calibrates probabilities
    # Divide each horizon's loss by the entropy of its prior, so the rare h1 target (12% positives,
    # the smallest loss) is not drowned by h3/h5; keeps probabilities calibrated, unlike pos_weight.
    balance_horizons: bool = False
    loss: str = "bce_logits"  # "bce_logits" or "sigmoid_bce" (the original, numerically weaker choice)
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available, else CPU
    # bfloat16 autocast on CUDA. Off: measured on an H200 (bench/results/gpu_2026-12-04/), fp32 retrains
    # faster at this model size (2.64 s against 3.53 s) and bf16 crashes cuDNN attention's backward at 64
    # stacked members.
    amp: bool = False
    # torch.compile the fleet stack's training forward (train_fleet): fused elementwise kernels for
    # many small ones; off until bench/fleet_gpu.py measures it on the GPU (its compile time is paid
    # again for every new fleet size).
    compile: bool = False
    threads: int | None = None  # CPU threads; None: cpu_threads()'s rule
    # Train an ensemble's members together as one stacked model (train_stack); False: one after
    # the other (train_model), the reference path the bench compares against.
    stacked: bool = True
    # Start each horizon's output bias at the logit of the training prior (model.start_at_prior);
    # False: the layer's own init (a mean prediction about 0.5 at the start).
    prior_bias: bool = True
    # Record the training evidence (training_audit: losses against the prior's, gradient norms and
    # update ratios per parameter group, the untrained model's readings); off only to time it.
    record: bool = True
    # Parameter groups left untrained (training_audit.parameter_groups names them: patch_embedding,
    # positional_encoding, layer_<i>, head), e.g. to fit a head on a fixed encoder.
    freeze: tuple[str, ...] = ()
    progress: bool = False

    def __post_init__(self) -> None:
        if self.loss not in ("bce_logits", "sigmoid_bce"):
            raise ValueError(f"loss={self.loss!r}; expected 'bce_logits' or 'sigmoid_bce'")
        if self.batch_size < 2 or self.max_epochs < 1:
            raise ValueError(f"batch_size={self.batch_size}, max_epochs={self.max_epochs} are too small")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Windows:
    """Model inputs: X (N, L, C) float32, y (N, H) float32 (NaN where not matured), end dates (N,)."""

    X: np.ndarray
    y: np.ndarray
    dates: pd.DatetimeIndex

    def __len__(self) -> int:
        return len(self.X)

    def labelled(self) -> Windows:
        keep = ~np.isnan(self.y).any(axis=1)
        return Windows(self.X[keep], self.y[keep], self.dates[keep])


def make_windows(inputs: pd.DataFrame, targets: pd.DataFrame, lookback: int,
                 start: pd.Timestamp | str | None = None, end: pd.Timestamp | str | None = None) -> Windows:
    """Windows of ``lookback`` sessions ending at each date in [start, end] with complete inputs.

    The window ending at t uses rows t-lookback+1..t only (no look-ahead); its label is the
    target at t.
    """
    x = inputs.to_numpy(dtype="float32")
    y = targets.to_numpy(dtype="float32")
    if len(x) < lookback:
        return Windows(np.empty((0, lookback, x.shape[1]), "float32"), np.empty((0, y.shape[1]), "float32"),
                       pd.DatetimeIndex([]))
    view = np.lib.stride_tricks.sliding_window_view(x, lookback, axis=0)  # (T-L+1, C, L)
    ends = inputs.index[lookback - 1:]
    complete = ~np.isnan(view).any(axis=(1, 2))
    in_range = np.ones(len(ends), bool)
    if start is not None:
        in_range &= ends >= pd.Timestamp(start)
    if end is not None:
        in_range &= ends <= pd.Timestamp(end)
    keep = complete & in_range
    X = np.ascontiguousarray(view[keep].transpose(0, 2, 1))  # (N, L, C)
    return Windows(X, y[lookback - 1:][keep], pd.DatetimeIndex(ends[keep]))


@dataclass
class TrainResult:
    model: PatchTSTClassifier
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("nan")
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    device: str = "cpu"
    n_params: int = 0
    evidence: dict | None = None  # training_audit's record for this model (None when cfg.record is off)


def device_warning(work_pool: str | None, requested: str, used: str) -> str | None:
    """What to tell the operator when a run on a GPU work pool trained on the CPU (None otherwise)."""
    if used.startswith("cuda") or not work_pool or "gpu" not in work_pool.lower():
        return None
    why = ("this worker's torch sees no CUDA device (torch.cuda.is_available() is False)" if requested == "auto"
           else f"device={requested!r} was asked for")
    return (f"the retrain ran on work pool {work_pool!r} but trained on {used}: {why}. Check the worker's "
            f"NVIDIA driver and that its torch is a CUDA build (python -c 'import torch; print(torch.cuda.is_available())'), "
            f"or send retrains to the cpu pool on purpose.")


def cpu_threads(requested: int | None = None) -> int:
    """Torch's CPU threads for a training: ``requested`` when given (the fleet's workers get their
    share of the cores), else ``OMP_NUM_THREADS`` when set (a bench sharing the host), else every core
    this process may run on. Measured on a 16-core host (bench/results/gpu_2026-12-04/cpu_threads.txt):
    one epoch of the 2-member stack took 4.18 / 3.56 / 2.08 / 1.44 / 0.79 s on 1 / 2 / 4 / 8 / 16
    threads, so the former cap of 2 left 4.5x of a lone retrain's speed unused there; on 2 cores
    the rule gives the 2 it always had."""
    if requested:
        return max(1, int(requested))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def attention_backends(amp: bool):  # noqa: ANN201 - a context manager
    """The fused attention kernels a training may use. fp32: torch's choice (flash and cuDNN take
    half precision only). Under bf16 autocast the memory-efficient kernel (or the explicit one):
    cuDNN's backward failed (``mha_graph.execute(...).is_good()``) on a 64-member stack on an H200
    (bench/results/gpu_2026-12-04/README.md), and flash attention's backward indexes past 2**31
    elements at a wide stack's batch (batch x heads x 128 x 32: ~1e11 for 500 tickers)."""
    if not amp:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def train_model(train: Windows, val: Windows | None, model_cfg: PatchTSTConfig, cfg: TrainConfig,
                monitor: Windows | None = None, monitor_name: str = "monitor") -> TrainResult:
    """Fit with AdamW and a warm-up + cosine schedule.

    With validation windows: early stopping on validation loss, and the model at its best
    validation epoch is returned. With ``val=None``: exactly ``cfg.max_epochs`` epochs (the
    schedule ends there), and the final model is returned. On the CPU, in eval mode.
    ``monitor``: windows whose loss is recorded each epoch for the training audit when there is no
    validation set (e.g. the holdout); they never steer training.
    """
    train, val, watch = _checked(train, val, monitor, cfg)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.threads))
    else:
        torch.cuda.reset_peak_memory_stats(device)
    model = PatchTSTClassifier(model_cfg)
    if cfg.prior_bias:
        start_at_prior(model, train.y.mean(axis=0))
    init = init_readings(model, train.X, train.y) if cfg.record else None
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    rec, loss_fn, opt, sched, use_amp, (Xt, yt), (Xv, yv) = _loop(model, train, watch, cfg, device, init)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    best, best_state, best_epoch, bad = float("inf"), None, 0, 0
    history: list[dict] = []
    t0 = time.perf_counter()
    epochs = range(1, cfg.max_epochs + 1)
    bar = _progress(epochs, cfg.progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(Xt[idx])
            loss = loss_fn(logits.float(), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            rec.after_backward()
            rec.add_train_loss(logits, yt[idx])
            nn.utils.clip_grad_norm_(_trainable(model), 1.0)
            rec.before_step()
            opt.step()
            rec.after_step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses, log_loss = _eval_losses(model, Xv, yv, loss_fn, cfg.batch_size * 4, use_amp, 1)
        val_loss = float(losses[0]) if val is not None else None
        rec.end_epoch(epoch, log_loss, _watch_name(val, monitor_name) if watch is not None else None)
        history.append({"epoch": epoch, "train_loss": total / len(train), "val_loss": val_loss,
                        "lr": sched.get_last_lr()[0]})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(train=f"{total / len(train):.4f}", val=f"{val_loss or float('nan'):.4f}")
        if val_loss is None:  # fixed epochs: the last one is the model
            best_epoch = epoch
        elif val_loss < best - 1e-5:
            best, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    seconds = time.perf_counter() - t0
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    model = model.to("cpu")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    evidence = _evidence(rec, model, train, watch, loss_fn, 1)[0]
    return TrainResult(model=model, history=history, best_epoch=best_epoch,
                       best_val_loss=best if val is not None else float("nan"), seconds=seconds,
                       peak_rss_mb=peak_rss_mb(), peak_gpu_mb=peak_gpu, device=str(device), n_params=n_params,
                       evidence=evidence)


@dataclass
class EnsembleResult:
    model: PatchTSTEnsemble
    members: list[TrainResult]

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self.members)


def train_ensemble(train: Windows, val: Windows | None, model_cfg: PatchTSTConfig, cfg: TrainConfig,
                   n_members: int, monitor: Windows | None = None, monitor_name: str = "monitor") -> EnsembleResult:
    """``n_members`` models on the same windows, seeds ``cfg.seed``, ``cfg.seed + 1``, ...: trained
    together as one :class:`PatchTSTStack` (``cfg.stacked``, the default), or one after the other
    (the reference path, kept for the bench and for the post-norm BatchNorm variant)."""
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    if cfg.stacked and stackable(model_cfg):
        results = train_stack(train, val, model_cfg, cfg, n_members, monitor, monitor_name)
    else:
        results = [train_model(train, val, model_cfg, replace(cfg, seed=cfg.seed + i), monitor, monitor_name)
                   for i in range(n_members)]
    return EnsembleResult(model=PatchTSTEnsemble.of([r.model for r in results]), members=results)


@dataclass(frozen=True)
class StackJob:
    """One dataset of a fleet stack (a ticker's windows): its members train, stop early and are
    judged on these windows only. ``monitor``: followed per epoch when there is no validation set."""

    train: Windows
    val: Windows | None = None
    monitor: Windows | None = None
    monitor_name: str = "monitor"


def train_stack(train: Windows, val: Windows | None, model_cfg: PatchTSTConfig, cfg: TrainConfig,
                n_members: int, monitor: Windows | None = None, monitor_name: str = "monitor") -> list[TrainResult]:
    """``train_model`` for ``n_members`` seeds at once, as one stacked model: :func:`train_fleet` with
    one job. Returns one ``TrainResult`` per member."""
    return train_fleet([StackJob(train, val, monitor, monitor_name)], model_cfg, cfg, n_members)[0]


def train_fleet(jobs: list[StackJob], model_cfg: PatchTSTConfig, cfg: TrainConfig,
                n_members: int) -> list[list[TrainResult]]:
    """Every job's ``n_members`` members trained in one pass, as one :class:`PatchTSTStack` whose
    leading axis holds jobs x members (slot ``j * n_members + i`` is job j's member i): one forward
    and one backward per step for the whole fleet, on one device.

    Each slot is what ``train_model`` makes of its job alone with seed ``cfg.seed + i``: the same
    initial weights (the output bias at its own job's prior), its own shuffle of its own job's
    windows, its own loss (``pos_weight`` / horizon weights from its job's labels), its gradient
    clipped on its own slice, its own step count and warm-up + cosine schedule (a job's epoch has
    ``ceil(N_j / batch)`` steps), and with validation windows its own best epoch; the loop ends when
    every slot has run out of patience. Batches are padded to one width and masked: a slot whose job
    has no windows left in this epoch sits the step out (:class:`StackedAdamW` leaves its weights and
    moments untouched). Only the dropout masks come from another stream than alone. Returns, per job,
    one ``TrainResult`` per member (``seconds``: its share of the joint time).
    """
    if not jobs:
        raise ValueError("train_fleet needs at least one job")
    checked = [_checked(j.train, j.val, j.monitor, cfg) for j in jobs]
    M, J = n_members, len(jobs)
    K = J * M
    job_of = np.repeat(np.arange(J), M)  # slot -> job
    device = pick_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.threads))
    else:
        torch.cuda.reset_peak_memory_stats(device)
    priors = np.stack([tr.y.mean(axis=0) for tr, _, _ in checked])  # (J, H)
    members = []
    for j in range(J):
        for i in range(M):
            seed_everything(cfg.seed + i)
            members.append(PatchTSTClassifier(model_cfg))
            if cfg.prior_bias:
                start_at_prior(members[-1], priors[j])
    seed_everything(cfg.seed)
    model = PatchTSTStack.from_members(members).to(device)
    del members
    init = (stack_init_readings(model, [(tr.X, tr.y) for tr, _, _ in checked], job_of) if cfg.record
            else [None] * K)
    n_params = sum(p.numel() for p in model.parameters()) // K
    freeze(model, cfg.freeze)
    rec = TrainingRecorder(model, K, stacked=True, prior=priors[job_of], enabled=cfg.record)
    rec.record_init(init)
    opt = StackedAdamW(_trainable(model), K, weight_decay=cfg.weight_decay)
    loss = _SlotLoss.for_jobs(cfg, [tr for tr, _, _ in checked], job_of, device)
    use_amp = cfg.amp and device.type == "cuda"
    train = _Slots.of([tr for tr, _, _ in checked], job_of, device)
    has_val = [v is not None for _, v, _ in checked]
    watch = _Slots.of([w for _, _, w in checked], job_of, device)
    b = cfg.batch_size
    per_epoch = np.ceil(train.n / b).astype(int)  # (K,) steps in each slot's epoch
    warm = np.maximum(1, cfg.warmup_epochs * per_epoch)
    total = np.maximum(warm + 1, cfg.max_epochs * per_epoch)
    taken = np.zeros(K, dtype=np.int64)  # optimizer steps each slot has taken
    lr_now = lambda: cfg.lr * _schedule_factor(taken, warm, total)  # noqa: E731
    gens = [torch.Generator(device="cpu").manual_seed(cfg.seed + int(k % M)) for k in range(K)]
    best = [float("inf")] * K
    best_state: list[dict | None] = [None] * K
    best_epoch, bad = [0] * K, [0] * K
    history: list[list[dict]] = [[] for _ in range(K)]
    steps = int(per_epoch.max())
    forward = torch.compile(model) if cfg.compile else model
    with attention_backends(use_amp):  # bf16: an attention kernel that trains a stack this wide
        t0 = time.perf_counter()
        for epoch in _progress(range(1, cfg.max_epochs + 1), cfg.progress):
            t_epoch = time.perf_counter()
            model.train()
            orders = torch.full((K, steps * b), -1, dtype=torch.long)
            for k, g in enumerate(gens):
                orders[k, :train.n[k]] = torch.randperm(int(train.n[k]), generator=g)
            orders = orders.to(device)
            totals = torch.zeros(K, device=device)
            for s in range(steps):
                # each slot's real windows in this step follow from its count alone: known here, so the
                # step needs no read back from the device
                act = np.clip(train.n - s * b, 0, b) >= 2  # one sample is no batch (as train_model skips it)
                active = torch.as_tensor(act, device=device)
                idx, mask, _ = train.batch(orders[:, s * b:(s + 1) * b])
                mask = mask & active.unsqueeze(1)
                count = mask.sum(dim=1)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits = forward(train.X[idx])  # (K, b, H)
                y = train.y[idx]
                losses = loss(loss.sums(logits.float(), y, mask), count)  # (K,)
                opt.zero_grad()
                losses.sum().backward()
                rec.after_backward()
                rec.add_train_loss(logits, y, mask)
                model.clip_grad_norm_(1.0)
                rec.before_step()
                opt.step(torch.as_tensor(lr_now() * act, dtype=torch.float32, device=device), active)
                rec.after_step(active)
                taken += act
                totals += losses.detach() * count
            losses_v, log_loss = _slot_eval(model, watch, loss, b * 4, use_amp)
            rec.end_epoch(epoch, log_loss, None)
            lr = lr_now()
            totals = totals.cpu().numpy()
            took = round(time.perf_counter() - t_epoch, 3)  # the whole stack's epoch (the host has waited for it)
            for k in range(K):
                val_loss = float(losses_v[k]) if has_val[job_of[k]] else None
                history[k].append({"epoch": epoch, "train_loss": float(totals[k]) / int(train.n[k]),
                                   "val_loss": val_loss, "lr": float(lr[k]), "seconds": took})
                if val_loss is None:
                    best_epoch[k] = epoch
                elif bad[k] < cfg.patience:  # a member out of patience keeps its best epoch
                    if val_loss < best[k] - 1e-5:
                        best[k], best_epoch[k], bad[k] = val_loss, epoch, 0
                        best_state[k] = {n: p.detach()[k].to("cpu", copy=True) for n, p in model.named_parameters()}
                    else:
                        bad[k] += 1
            if all(has_val) and all(x >= cfg.patience for x in bad):
                break
        seconds = time.perf_counter() - t0
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    with torch.no_grad():
        for k in range(K):
            if best_state[k] is not None:
                for n, p in model.named_parameters():
                    p[k].copy_(best_state[k][n].to(p.device))
    for k, m in enumerate(rec.members):  # what each slot's validation readings were taken on
        job, (_, val, w) = jobs[job_of[k]], checked[job_of[k]]
        m["val_source"] = _watch_name(val, job.monitor_name) if w is not None else None
        if w is None:
            for e in m["epochs"]:
                e["val_loss"] = None
    evidence = _fleet_evidence(rec, model, checked, job_of, loss, b * 4)
    trained = model.to("cpu").to_members()
    rss = peak_rss_mb()
    out: list[list[TrainResult]] = [[] for _ in range(J)]
    for k in range(K):
        val = checked[job_of[k]][1]
        out[job_of[k]].append(TrainResult(model=trained[k], history=history[k], best_epoch=best_epoch[k],
                                          best_val_loss=best[k] if val is not None else float("nan"),
                                          seconds=seconds / K, peak_rss_mb=rss, peak_gpu_mb=peak_gpu,
                                          device=str(device), n_params=n_params, evidence=evidence[k]))
    return out


class StackedAdamW:
    """AdamW (torch's update with decoupled weight decay, betas (0.9, 0.999), eps 1e-8) over a
    stack's parameters (slot on the leading axis), with each slot's own step count and learning
    rate. ``step(lr, active)``: lr (K,), active (K,) bool; a slot that is not active keeps its weights
    and moments as they were (its job had no windows left in this step of the epoch)."""

    def __init__(self, params: list[nn.Parameter], k: int, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.k, self.wd, (self.b1, self.b2), self.eps = list(params), k, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(k, device=self.params[0].device)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        a = active.to(self.t.dtype)
        self.t += a
        t = self.t.clamp_min(1)
        step_size, bc2_sqrt = lr / (1 - self.b1 ** t), (1 - self.b2 ** t).sqrt()
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g, shape = p.grad, (self.k,) + (1,) * (p.dim() - 1)
            w = a.view(shape)
            p.mul_(1 - (lr * self.wd).view(shape))
            m.lerp_(g, (1 - self.b1) * w)
            v.mul_(1 - (1 - self.b2) * w).addcmul_(g, g * w, value=1 - self.b2)
            p.addcdiv_(m * step_size.view(shape), (v.sqrt() / bc2_sqrt.view(shape)).add_(self.eps), value=-1)


@dataclass
class _Slots:
    """The windows of every slot of a fleet stack on the device: its jobs' windows concatenated
    (X (sum N, L, C), y (sum N, H)), and per slot where its job's windows start and how many."""

    X: torch.Tensor | None
    y: torch.Tensor | None
    start: torch.Tensor  # (K,) long
    n: np.ndarray  # (K,) int

    @classmethod
    def of(cls, windows: list[Windows | None], job_of: np.ndarray, device: torch.device) -> _Slots:
        sizes = np.array([0 if w is None else len(w) for w in windows])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        present = [w for w in windows if w is not None and len(w)]
        to = lambda a: torch.from_numpy(np.concatenate(a)).to(device) if present else None  # noqa: E731
        return cls(X=to([w.X for w in present]), y=to([w.y for w in present]),
                   start=torch.as_tensor(starts[job_of], dtype=torch.long, device=device), n=sizes[job_of])

    def batch(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``local`` (K, b): each slot's window numbers within its job, -1 for padding -> rows of X
        (padding points at a valid row), the mask of real ones and their count per slot."""
        mask = local >= 0
        idx = (self.start.unsqueeze(1) + local.clamp_min(0)).clamp_max(len(self.X) - 1)
        return idx, mask, mask.sum(dim=1)


class _SlotLoss:
    """Each slot's training loss with its own job's weights (``_loss_weights``): per-horizon sums
    over the real samples of a padded batch, then the mean ``_loss`` takes (horizons re-weighted)."""

    def __init__(self, kind: str, pos_weight: torch.Tensor | None, horizon_weight: torch.Tensor | None) -> None:
        self.kind, self.pos_weight, self.horizon_weight = kind, pos_weight, horizon_weight

    @classmethod
    def for_jobs(cls, cfg: TrainConfig, trains: list[Windows], job_of: np.ndarray, device: torch.device) -> _SlotLoss:
        weights = [_loss_weights(cfg, tr) for tr in trains]
        stack = lambda i: (None if weights[0][i] is None else  # noqa: E731
                           torch.tensor(np.stack([w[i] for w in weights])[job_of], dtype=torch.float32, device=device))
        return cls(cfg.loss, stack(0), stack(1))

    def sums(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(K, b, H) logits and labels, (K, b) mask -> (K, H) summed losses."""
        if self.kind == "sigmoid_bce":
            per = F.binary_cross_entropy(torch.sigmoid(logits), y, reduction="none")
        else:
            pw = None if self.pos_weight is None else self.pos_weight.unsqueeze(1)
            per = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw, reduction="none")
        return (per * mask.unsqueeze(-1)).sum(dim=1)

    def __call__(self, sums: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        per_horizon = sums / count.clamp_min(1).unsqueeze(-1).to(sums.dtype)
        if self.horizon_weight is not None:
            per_horizon = per_horizon * self.horizon_weight
        return per_horizon.mean(dim=-1)


@torch.no_grad()
def _slot_eval(model: PatchTSTStack, slots: _Slots, loss: _SlotLoss, width: int,
               amp: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Each slot on its own job's windows, eval mode: the training loss (K,) and the log loss per
    horizon (K, H); nan for a slot without windows, (nan, None) when no slot has any."""
    K = len(slots.n)
    if slots.X is None:
        return np.full(K, np.nan), None
    model.eval()
    device = slots.X.device
    n = torch.as_tensor(slots.n, device=device)
    sums = torch.zeros(K, slots.y.shape[1], dtype=torch.float64, device=device)
    log_loss = torch.zeros_like(sums)
    top = int(slots.n.max())
    for c in range(0, top, width):
        local = torch.arange(c, min(c + width, top), device=device).expand(K, -1)
        idx, mask, _ = slots.batch(torch.where(local < n.unsqueeze(1), local, -1))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(slots.X[idx])
        logits, y = logits.float(), slots.y[idx]
        sums += loss.sums(logits, y, mask).double()
        log_loss += (log_loss_per_element(logits, y) * mask.unsqueeze(-1)).sum(dim=1).double()
    empty = (n == 0).cpu().numpy()
    losses = loss(sums, n).cpu().numpy()
    per_horizon = (log_loss / n.clamp_min(1).unsqueeze(-1)).cpu().numpy()
    losses[empty], per_horizon[empty] = np.nan, np.nan
    return losses, per_horizon


def _fleet_evidence(rec: TrainingRecorder, model: PatchTSTStack, checked: list, job_of: np.ndarray,
                    loss: _SlotLoss, width: int) -> list:
    """``_evidence`` for a fleet stack: each slot's eval-mode log loss on a sample of its own job's
    training windows, beside its prior's."""
    if not rec.enabled:
        return [None] * len(job_of)
    picks = [spread(len(tr), FIT_SAMPLE) for tr, _, _ in checked]
    sample = _Slots.of([Windows(tr.X[p], tr.y[p], tr.dates[p]) for (tr, _, _), p in zip(checked, picks)], job_of,
                       next(model.parameters()).device)
    _, fit_loss = _slot_eval(model, sample, loss, width, False)
    per_slot = [checked[j] for j in job_of]
    return rec.finish([w.y if w is not None else None for _, _, w in per_slot], [tr.y for tr, _, _ in per_slot],
                      fit_loss, [tr.y[picks[j]] for tr, j in zip((c[0] for c in per_slot), job_of)])


def _loss_weights(cfg: TrainConfig, train: Windows) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(pos_weight, horizon_weight), each (H,) or None, from the training labels."""
    pos_weight = horizon_weight = None
    rate = train.y.mean(axis=0).clip(1e-3, 1 - 1e-3)
    if cfg.pos_weight:
        pos_weight = (1 - rate) / rate
    if cfg.balance_horizons:
        entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        horizon_weight = entropy.mean() / entropy
    return pos_weight, horizon_weight


def _train_loss(cfg: TrainConfig, train: Windows, device: torch.device):
    on = lambda w: None if w is None else torch.tensor(w, dtype=torch.float32, device=device)  # noqa: E731
    pos_weight, horizon_weight = _loss_weights(cfg, train)
    return _loss(cfg.loss, on(pos_weight), on(horizon_weight))


def _checked(train: Windows, val: Windows | None, monitor: Windows | None,
             cfg: TrainConfig) -> tuple[Windows, Windows | None, Windows | None]:
    """Labelled train / validation windows (refused when too few), and the windows whose loss the
    training audit follows each epoch: the validation set, else the monitor windows, else none."""
    train = train.labelled()
    val = val.labelled() if val is not None else None
    if len(train) < cfg.batch_size or (val is not None and len(val) == 0):
        raise ValueError(f"too few labelled windows: train={len(train)} (batch {cfg.batch_size}), "
                         f"val={None if val is None else len(val)}")
    watch = val if val is not None else (monitor.labelled() if monitor is not None and cfg.record else None)
    return train, val, watch if watch is not None and len(watch) else None


def _watch_name(val: Windows | None, monitor_name: str) -> str:
    return "validation" if val is not None else monitor_name


def _on(w: Windows | None, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if w is None:
        return None, None
    return torch.from_numpy(w.X).to(device), torch.from_numpy(w.y).to(device)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _loop(model: nn.Module, train: Windows, watch: Windows | None, cfg: TrainConfig, device: torch.device,
          init: dict | None):
    """What ``train_model`` sets up once its model is on its device: frozen groups, the loss, the
    recorder with the untrained readings, AdamW over the trainable parameters with the warm-up +
    cosine schedule, autocast, and the training and watched windows on the device."""
    freeze(model, cfg.freeze)
    rec = TrainingRecorder(model, 1, stacked=False, prior=train.y.mean(axis=0), enabled=cfg.record)
    rec.record_init([init])
    opt = torch.optim.AdamW(_trainable(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, cfg, int(np.ceil(len(train) / cfg.batch_size)))
    return (rec, _train_loss(cfg, train, device), opt, sched, cfg.amp and device.type == "cuda",
            _on(train, device), _on(watch, device))


FIT_SAMPLE = 2048  # training windows the returned model is scored on (spread evenly over the fit span)


def _evidence(rec: TrainingRecorder, model: nn.Module, train: Windows, watch: Windows | None, loss_fn,
              k: int) -> list:
    """The recorder's evidence, with the returned model's eval-mode log loss on (a sample of) its
    training windows beside the prior's: without dropout's noise, the cleanest reading of whether
    it learned more than the prior."""
    if not rec.enabled:
        return [None] * k
    pick = spread(len(train), FIT_SAMPLE)
    X, y = torch.from_numpy(train.X[pick]), torch.from_numpy(train.y[pick])
    _, fit_loss = _eval_losses(model, X, y, loss_fn, 4096, False, k)  # the model is back on the CPU
    return rec.finish([watch.y if watch is not None else None] * k, [train.y] * k, fit_loss, [train.y[pick]] * k)


@torch.no_grad()
def _eval_losses(model: nn.Module, X: torch.Tensor | None, y: torch.Tensor | None, loss_fn, batch: int, amp: bool,
                 k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """On windows X, y in eval mode: the training loss (k,) and the log loss per horizon (k, H) of
    each of the ``k`` models (a stack's members, or one model). (nan, None) without windows."""
    if X is None:
        return np.full(k, np.nan), None
    model.eval()
    totals = np.zeros(k)
    log_loss = torch.zeros(k, y.shape[1], dtype=torch.float64, device=X.device)
    for i in range(0, len(X), batch):
        yb = y[i:i + batch]
        with torch.autocast(X.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(X[i:i + batch])
        logits = logits.float().reshape(k, -1, logits.shape[-1])  # (k, b, H)
        totals += [float(loss_fn(logits[j], yb)) * len(yb) for j in range(k)]
        log_loss += log_loss_per_horizon(logits, yb).double()
    return totals / len(X), (log_loss / len(X)).cpu().numpy()


def _loss(kind: str, pos_weight: torch.Tensor | None, horizon_weight: torch.Tensor | None = None):
    """Mean BCE over samples and horizons; horizons optionally re-weighted (weights average 1)."""
    if kind == "sigmoid_bce":
        bce = nn.BCELoss()  # the original: sigmoid, then BCELoss (saturates and ignores pos_weight)
        return lambda logits, y: bce(torch.sigmoid(logits), y)
    per_element = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per_horizon = per_element(logits, y).mean(dim=0)  # (H,)
        if horizon_weight is not None:
            per_horizon = per_horizon * horizon_weight
        return per_horizon.mean()

    return loss


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    warm = max(1, cfg.warmup_epochs * steps_per_epoch)
    total = max(warm + 1, cfg.max_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: float(_schedule_factor(step, warm, total)))


def _schedule_factor(step, warm, total) -> np.ndarray:
    """The learning rate's factor after ``step`` optimizer steps: a linear warm-up over ``warm``
    steps, then a cosine decay to 1/20 at ``total`` (each may be an array: a fleet stack's slots)."""
    step = np.asarray(step, dtype=float)
    progress = np.clip((step - warm) / (np.asarray(total) - warm), 0.0, 1.0)
    return np.where(step < warm, (step + 1) / warm, 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress)))


def _progress(it, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc="epochs", leave=False)


# ----------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class Inspection:
    """What the collapse audit needs from the model's internals on a set of windows.

    For an ensemble: ``proba`` is the members' mean, ``member_proba`` each member's, and the
    internal signals are averaged over members.
    """

    proba: np.ndarray  # (N, H)
    attention_entropy_ratio: float  # 1.0 = uniform attention
    # Mean over dims of the std across samples of the encoder's pooled output (without the head's
    # skip inputs, which differ between samples whatever the encoder does); for an ensemble the
    # lowest member's, so one member whose encoder went dead is not hidden by the others.
    representation_std: float
    pos_to_content_ratio: float  # positional-encoding norm / patch-embedding norm
    member_proba: np.ndarray | None = None  # (K, N, H)


def members_of(model) -> list[PatchTSTClassifier]:
    return list(model.members) if isinstance(model, PatchTSTEnsemble) else [model]


def stacked(model) -> PatchTSTStack | None:
    """The members as one stacked model for inference (None on the reference-only BatchNorm variant)."""
    members = members_of(model)
    return PatchTSTStack.from_members(members).eval() if stackable(members[0].cfg) else None


@torch.no_grad()
def predict_members(model, X: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Each member's probabilities, (K, N, H); a single model counts as one member."""
    model.eval()
    members = members_of(model)
    stack = stacked(model)
    if len(X) == 0:
        return np.empty((len(members), 0, members[0].cfg.n_outputs), "float32")
    parts = []
    for i in range(0, len(X), batch):
        xb = torch.from_numpy(X[i:i + batch])
        logits = stack(xb) if stack is not None else torch.stack([m(xb) for m in members])  # (K, b, H)
        parts.append(torch.sigmoid(logits).numpy())
    return np.concatenate(parts, axis=1)


def predict_proba(model, X: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities (N, H): the members' mean for an ensemble."""
    return predict_members(model, X, batch).mean(axis=0)


@torch.no_grad()
def inspect(model, X: np.ndarray, batch: int = 1024) -> Inspection:
    model.eval()
    members = members_of(model)
    stack = stacked(model)
    K = len(members)
    probs, reps, ents = [], [], []  # per batch: (K, b, H), (K, b, R), K x (ratio, b)
    for i in range(0, len(X), batch):
        xb = torch.from_numpy(X[i:i + batch])
        if stack is not None:
            out = stack.forward_with_details(xb, need_weights=True)
            probs.append(torch.sigmoid(out.logits).numpy())
            reps.append(out.encoder_representation.numpy())
            ents.append([attention_entropy_ratio([w[k] for w in out.attention]) for k in range(K)])
        else:
            outs = [m.forward_with_details(xb, need_weights=True) for m in members]
            probs.append(np.stack([torch.sigmoid(o.logits).numpy() for o in outs]))
            reps.append(np.stack([o.encoder_representation.numpy() for o in outs]))
            ents.append([attention_entropy_ratio(o.attention) for o in outs])
    sizes = np.array([p.shape[1] for p in probs], dtype=float)
    member_proba = np.concatenate(probs, axis=1)  # (K, N, H)
    rep_std = np.concatenate(reps, axis=1).std(axis=1).mean(axis=1)  # (K,)
    ent = (np.array(ents) * sizes[:, None]).sum(axis=0) / max(1.0, sizes.sum())  # (K,)
    sample = torch.from_numpy(X[: min(len(X), 512)])
    ratios = [m.pos_to_content_ratio(sample) for m in members]
    return Inspection(proba=member_proba.mean(axis=0), attention_entropy_ratio=float(np.mean(ent)),
                      representation_std=float(np.min(rep_std)), pos_to_content_ratio=float(np.mean(ratios)),
                      member_proba=member_proba)
