"""Training loop for the PatchTST classifier (no Prefect, no files): windows in, fitted model out."""

from __future__ import annotations

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

from spywatch.model import (PatchTSTClassifier, PatchTSTConfig, PatchTSTEnsemble, PatchTSTStack,
                            attention_entropy_ratio, stackable, start_at_prior)
from spywatch.training_record import TrainingRecorder, freeze, init_readings, log_loss_per_horizon, spread

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
    rec, loss_fn, opt, sched, use_amp, (Xt, yt), (Xv, yv) = _loop(model, 1, train, watch, cfg, device, [init])
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


def train_stack(train: Windows, val: Windows | None, model_cfg: PatchTSTConfig, cfg: TrainConfig,
                n_members: int, monitor: Windows | None = None, monitor_name: str = "monitor") -> list[TrainResult]:
    """``train_model`` for ``n_members`` seeds at once, as one stacked model.

    Member i starts from the weights ``train_model`` would draw with seed ``cfg.seed + i``, walks
    its own shuffle of the windows (its own generator), has its gradient clipped on its own slice
    and, with validation windows, keeps its own best epoch (the loop ends when every member has run
    out of patience). AdamW and the schedule act element-wise, so each member's update is what it
    would be alone; only the dropout masks come from another stream. Returns one ``TrainResult``
    per member (its ``seconds`` is its share of the joint time).
    """
    train, val, watch = _checked(train, val, monitor, cfg)
    K = n_members
    device = pick_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.threads))
    else:
        torch.cuda.reset_peak_memory_stats(device)
    members = []
    for i in range(K):
        seed_everything(cfg.seed + i)
        members.append(PatchTSTClassifier(model_cfg))
        if cfg.prior_bias:
            start_at_prior(members[-1], train.y.mean(axis=0))
    seed_everything(cfg.seed)
    init = [init_readings(m, train.X, train.y) for m in members] if cfg.record else [None] * K
    model = PatchTSTStack.from_members(members).to(device)
    n_params = sum(p.numel() for p in model.parameters()) // K
    rec, loss_fn, opt, sched, use_amp, (Xt, yt), (Xv, yv) = _loop(model, K, train, watch, cfg, device, init)
    gens = [torch.Generator(device="cpu").manual_seed(cfg.seed + i) for i in range(K)]
    best = [float("inf")] * K
    best_state: list[dict | None] = [None] * K
    best_epoch, bad = [0] * K, [0] * K
    history: list[list[dict]] = [[] for _ in range(K)]
    t0 = time.perf_counter()
    for epoch in _progress(range(1, cfg.max_epochs + 1), cfg.progress):
        model.train()
        orders = torch.stack([torch.randperm(len(train), generator=g) for g in gens]).to(device)  # (K, N)
        totals = torch.zeros(K, device=device)
        for i in range(0, len(train), cfg.batch_size):
            idx = orders[:, i:i + cfg.batch_size]  # (K, b)
            if idx.shape[1] < 2:
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(Xt[idx])  # (K, b, H)
            losses = torch.stack([loss_fn(logits[k].float(), yt[idx[k]]) for k in range(K)])  # (K,)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            rec.after_backward()
            rec.add_train_loss(logits, yt[idx])
            model.clip_grad_norm_(1.0)
            rec.before_step()
            opt.step()
            rec.after_step()
            sched.step()
            totals += losses.detach() * idx.shape[1]
        losses_v, log_loss = _eval_losses(model, Xv, yv, loss_fn, cfg.batch_size * 4, use_amp, K)
        val_losses = list(losses_v) if val is not None else None
        rec.end_epoch(epoch, log_loss, _watch_name(val, monitor_name) if watch is not None else None)
        lr = sched.get_last_lr()[0]
        for k in range(K):
            val_loss = None if val_losses is None else val_losses[k]
            history[k].append({"epoch": epoch, "train_loss": float(totals[k]) / len(train), "val_loss": val_loss,
                               "lr": lr})
            if val_loss is None:
                best_epoch[k] = epoch
            elif bad[k] < cfg.patience:  # a member out of patience keeps its best epoch
                if val_loss < best[k] - 1e-5:
                    best[k], best_epoch[k], bad[k] = val_loss, epoch, 0
                    best_state[k] = {n: p.detach()[k].to("cpu", copy=True) for n, p in model.named_parameters()}
                else:
                    bad[k] += 1
        if val is not None and all(b >= cfg.patience for b in bad):
            break
    seconds = time.perf_counter() - t0
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    model = model.to("cpu")
    with torch.no_grad():
        for k in range(K):
            if best_state[k] is not None:
                for n, p in model.named_parameters():
                    p[k].copy_(best_state[k][n])
    evidence = _evidence(rec, model, train, watch, loss_fn, K)
    trained = model.to_members()
    return [TrainResult(model=trained[k], history=history[k], best_epoch=best_epoch[k],
                        best_val_loss=best[k] if val is not None else float("nan"), seconds=seconds / K,
                        peak_rss_mb=peak_rss_mb(), peak_gpu_mb=peak_gpu, device=str(device), n_params=n_params,
                        evidence=evidence[k])
            for k in range(K)]


def _train_loss(cfg: TrainConfig, train: Windows, device: torch.device):
    pos_weight = horizon_weight = None
    rate = train.y.mean(axis=0).clip(1e-3, 1 - 1e-3)
    if cfg.pos_weight:
        pos_weight = torch.tensor((1 - rate) / rate, dtype=torch.float32, device=device)
    if cfg.balance_horizons:
        entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        horizon_weight = torch.tensor(entropy.mean() / entropy, dtype=torch.float32, device=device)
    return _loss(cfg.loss, pos_weight, horizon_weight)


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


def _loop(model: nn.Module, k: int, train: Windows, watch: Windows | None, cfg: TrainConfig, device: torch.device,
          init: list[dict | None]):
    """What both training paths set up alike once the model is on its device (``k`` models: 1, or a
    stack's members): frozen groups, the loss, the recorder with the untrained readings, AdamW over
    the trainable parameters with the warm-up + cosine schedule, autocast, and the training and
    watched windows on the device."""
    freeze(model, cfg.freeze)
    rec = TrainingRecorder(model, k, stacked=isinstance(model, PatchTSTStack), prior=train.y.mean(axis=0),
                           enabled=cfg.record)
    rec.record_init(init)
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
    return rec.finish(watch.y if watch is not None else None, train.y, fit_loss, train.y[pick])


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

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / (total - warm))
        return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


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
