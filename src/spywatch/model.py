"""PatchTST classifier: one model, one logit per horizon.

Reads top to bottom: config -> RevIN -> patching -> encoder layer (returns its attention) ->
encoder -> heads -> classifier. Torch only. Follows yuqinie98/PatchTST (patches over each
channel, channel independence with shared weights, end padding by replicating the last value
``stride`` times, learnable positional encoding initialised uniform +-0.02) with a
classification head. The original spywatch models initialised the positional encoding with
``randn`` (std 1, twice the size of the content signal); ``pos_init="randn"`` reproduces that
for the collapse demonstration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class PatchTSTConfig:
    n_channels: int  # input features per session
    n_outputs: int = 3  # one logit per horizon
    lookback: int = 20  # sessions per input window
    patch_len: int = 4
    # Non-overlapping patches (6 tokens per channel, not 10) and one encoder layer: 3.2x faster to
    # train than stride 2 with two layers at the same out-of-time AUC (paired difference inside its
    # interval, bench/results/train_timing.md); the paper's stride 2 and 2-3 layers remain settings.
    stride: int = 4
    pad_end: bool = True  # replicate the last value `stride` times (official "end" padding)
    d_model: int = 16
    n_heads: int = 2
    n_layers: int = 1
    d_ff: int = 32
    dropout: float = 0.2
    attn_dropout: float = 0.0
    norm: str = "layernorm"  # "layernorm" (pre-norm) or "batchnorm" (post-norm, as in the paper)
    revin: bool = False  # per-window instance normalisation; erases the volatility level (measured)
    pos_init: str = "uniform"  # "uniform" (+-0.02) or "randn" (std 1: the original bug)
    head: str = "channel_mix"  # "channel_mix": mean over patches, MLP across channels; "flatten"
    head_hidden: int = 64
    head_dropout: float = 0.3
    # Also feed the last session's inputs (B, C) to the head beside the pooled patches: the
    # current level of a bounded feature (today's volatility) is what a tree splits on.
    head_skip: bool = True

    def __post_init__(self) -> None:
        if self.patch_len < 1 or self.stride < 1 or self.patch_len > self.lookback:
            raise ValueError(f"need 1 <= patch_len <= lookback and stride >= 1, got patch_len={self.patch_len}, "
                             f"stride={self.stride}, lookback={self.lookback}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name, value, allowed in (("norm", self.norm, ("layernorm", "batchnorm")),
                                     ("pos_init", self.pos_init, ("uniform", "randn")),
                                     ("head", self.head, ("channel_mix", "flatten"))):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}; expected one of {allowed}")

    @property
    def n_patches(self) -> int:
        padded = self.lookback + (self.stride if self.pad_end else 0)
        return (padded - self.patch_len) // self.stride + 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PatchTSTOutput:
    logits: torch.Tensor  # (B, H)
    attention: list[torch.Tensor]  # per layer (B, C, heads, N, N)
    representation: torch.Tensor  # (B, R): the pooled vector the head classifies (with the skip inputs)
    encoder_representation: torch.Tensor  # (B, C*D) or (B, C*N*D): the encoder's pooled output alone
    patch_embedding: torch.Tensor  # (B, C, N, D) before the positional encoding is added


# ----------------------------------------------------------------------------- layers


def _positional_encoding(shape: tuple[int, ...], init: str) -> nn.Parameter:
    """Learnable positional encoding: uniform +-0.02 (the paper's), or ``randn`` (the original bug)."""
    pos = torch.empty(shape)
    if init == "uniform":
        nn.init.uniform_(pos, -0.02, 0.02)
    else:
        nn.init.normal_(pos, 0.0, 1.0)
    return nn.Parameter(pos)


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis of each window and channel."""

    def __init__(self, n_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.eps) * self.weight + self.bias  # x: (B, L, C)


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each window and channel standardised over its time axis (the second-last: (..., L, C))."""
    mean = x.mean(dim=-2, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=-2, keepdim=True, unbiased=False) + eps)


class Dropout(nn.Module):
    """Inverted dropout whose CPU mask comes from random bytes instead of ``bernoulli_``.

    ``nn.Dropout`` spent about a third of a CPU training step drawing its float Bernoulli mask
    (``aten::bernoulli_``); one random byte per element, compared with a threshold, is about 5x
    cheaper. Same distribution up to ``p`` rounded to a multiple of 1/256 (0.2 -> 0.1992), the
    same ``1 / (1 - p)`` scaling, the same torch generator (seeded runs repeat). Off the CPU it is
    ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p} must be in [0, 1)")
        self.p = p
        self.threshold = round(p * 256)  # a byte below this drops its element

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        n = x.numel()
        raw = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-2**63, 2**63 - 1)
        keep = raw.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(256.0 / (256 - self.threshold))

    def extra_repr(self) -> str:
        return f"p={self.threshold / 256:.4f}"


class BatchNormD(nn.Module):
    """BatchNorm over d_model for (B, N, D) tokens, as in the PatchTST encoder."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention that can return its weights (B, heads, N, N)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, D = x.shape  # B here is batch * channels
        q, k, v = self.qkv(x).reshape(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d)
        # Explicit softmax attention: for ~10 patches it is faster on CPU than the fused kernel,
        # and the audit reads the weights.
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, h, N, N)
        y = F.dropout(w, self.dropout, self.training) @ v  # (B, h, N, d)
        return self.out(y.transpose(1, 2).reshape(B, N, D)), (w if need_weights else None)


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward; returns its attention weights for the audit."""

    def __init__(self, cfg: PatchTSTConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "layernorm"
        norm = (lambda: nn.LayerNorm(cfg.d_model)) if self.pre_norm else (lambda: BatchNormD(cfg.d_model))
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.attn_dropout)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), Dropout(cfg.dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1, self.norm2 = norm(), norm()
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: (B*C, N, D)
        h = self.norm1(x) if self.pre_norm else x
        a, w = self.attn(h, need_weights)  # w: (B*C, heads, N, N)
        x = x + self.drop(a)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = x + self.drop(self.ff(h))
        if not self.pre_norm:
            x = self.norm2(x)
        return x, w


# ----------------------------------------------------------------------------- classifier


class PatchTSTClassifier(nn.Module):
    """Multi-horizon binary classifier over a window of feature channels.

    Args:
        cfg: architecture config.
    Input:
        x: (B, L, C) float windows of (scaled) features, L = cfg.lookback, C = cfg.n_channels.
    Output:
        logits (B, H), H = cfg.n_outputs; apply sigmoid only for probabilities.
    """

    def __init__(self, cfg: PatchTSTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_patches
        self.revin = RevIN(cfg.n_channels) if cfg.revin else None
        self.pad = nn.ReplicationPad1d((0, cfg.stride)) if cfg.pad_end else None
        self.patch_proj = nn.Linear(cfg.patch_len, cfg.d_model)
        self.pos = _positional_encoding((1, n, cfg.d_model), cfg.pos_init)
        self.drop = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else nn.Identity()
        skip = cfg.n_channels if cfg.head_skip else 0
        if cfg.head == "channel_mix":
            rep = cfg.n_channels * cfg.d_model + skip
            self.head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(rep, cfg.head_hidden), nn.GELU(),
                                      nn.Dropout(cfg.head_dropout), nn.Linear(cfg.head_hidden, cfg.n_outputs))
        else:
            rep = cfg.n_channels * n * cfg.d_model + skip
            self.head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(rep, cfg.n_outputs))

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        if L != self.cfg.lookback or C != self.cfg.n_channels:
            raise ValueError(f"expected input (B, {self.cfg.lookback}, {self.cfg.n_channels}), got {tuple(x.shape)}")
        if self.revin is not None:
            x = self.revin(x)
        x = x.transpose(1, 2)  # (B, C, L)
        if self.pad is not None:
            x = self.pad(x)  # (B, C, L + stride)
        return x.unfold(-1, self.cfg.patch_len, self.cfg.stride)  # (B, C, N, P)

    def forward_with_details(self, x: torch.Tensor, need_weights: bool = True) -> PatchTSTOutput:
        B, C = x.shape[0], self.cfg.n_channels
        patches = self._patches(x)  # (B, C, N, P)
        emb = self.patch_proj(patches)  # (B, C, N, D)
        N, D = emb.shape[2], emb.shape[3]
        z = self.drop(emb + self.pos).reshape(B * C, N, D)  # channel independence: channels become batch
        attention = []
        for layer in self.layers:
            z, w = layer(z, need_weights)
            if w is not None:
                attention.append(w.reshape(B, C, *w.shape[1:]))  # (B, C, heads, N, N)
        z = self.final_norm(z).reshape(B, C, N, D)
        if self.cfg.head == "channel_mix":
            rep = z.mean(dim=2).reshape(B, C * D)  # (B, C*D)
        else:
            rep = z.reshape(B, C * N * D)  # (B, C*N*D)
        encoded = rep
        if self.cfg.head_skip:
            rep = torch.cat([rep, x[:, -1, :]], dim=1)  # (B, R + C)
        return PatchTSTOutput(logits=self.head(rep), attention=attention, representation=rep,
                              encoder_representation=encoded, patch_embedding=emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_details(x, need_weights=False).logits

    def output_bias(self) -> torch.Tensor:
        """The bias of the last layer: one entry per horizon."""
        return self.head[-1].bias

    def pos_to_content_ratio(self, x: torch.Tensor) -> float:
        """Mean norm of the positional encoding over the mean norm of the patch embeddings.

        Above ~1 the position dominates what the encoder sees (the original ``randn`` init gave ~2).
        """
        with torch.no_grad():
            emb = self.patch_proj(self._patches(x))  # (B, C, N, D)
            content = emb.norm(dim=-1).mean()
            pos = self.pos.norm(dim=-1).mean()
        return float(pos / content.clamp_min(1e-12))


class PatchTSTEnsemble(nn.Module):
    """k PatchTST members (different seeds) whose probabilities are averaged.

    One member's AUC moves by a few hundredths from seed to seed; the average of a few members
    is steadier and ranks better, and the members' spread says how sure the ensemble is.

    Input:
        x: (B, L, C) as for one member.
    Output:
        ``forward``: member logits (K, B, H); ``proba``: mean probability (B, H).
    """

    def __init__(self, cfg: PatchTSTConfig, n_members: int) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got n_members={n_members}")
        self.cfg = cfg
        self.members = nn.ModuleList(PatchTSTClassifier(cfg) for _ in range(n_members))

    @classmethod
    def of(cls, members: list[PatchTSTClassifier]) -> PatchTSTEnsemble:
        """Wrap trained members (same config) into one ensemble."""
        if not members or any(m.cfg != members[0].cfg for m in members):
            raise ValueError("ensemble members must be at least one and share one config")
        ens = cls(members[0].cfg, len(members))
        ens.members = nn.ModuleList(members)
        return ens

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])  # (K, B, H)

    def proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x)).mean(dim=0)  # (B, H)


# ----------------------------------------------------------------------------- the stacked (fast) path


def _stacked(k: int, fan_in: int, fan_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """k independent ``nn.Linear(fan_in, fan_out)`` as one (k, in, out) weight and (k, 1, out) bias,
    initialised as ``nn.Linear`` does (uniform +-1/sqrt(fan_in) for both)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (nn.Parameter(torch.empty(k, fan_in, fan_out).uniform_(-bound, bound)),
            nn.Parameter(torch.empty(k, 1, fan_out).uniform_(-bound, bound)))


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K, M, in) @ (K, in, out) + (K, 1, out): every member's linear layer in one batched matmul."""
    return torch.baddbmm(b, x, w)


class StackedLayer(nn.Module):
    """An ``EncoderLayer`` (pre-norm) for K members at once; tokens are (K, B*C, N, D)."""

    def __init__(self, cfg: PatchTSTConfig, k: int) -> None:
        super().__init__()
        D, F_ = cfg.d_model, cfg.d_ff
        self.n_heads, self.attn_dropout = cfg.n_heads, cfg.attn_dropout
        self.ln1_w, self.ln1_b = nn.Parameter(torch.ones(k, 1, 1, D)), nn.Parameter(torch.zeros(k, 1, 1, D))
        self.qkv_w, self.qkv_b = _stacked(k, D, 3 * D)
        self.out_w, self.out_b = _stacked(k, D, D)
        self.ln2_w, self.ln2_b = nn.Parameter(torch.ones(k, 1, 1, D)), nn.Parameter(torch.zeros(k, 1, 1, D))
        self.ff1_w, self.ff1_b = _stacked(k, D, F_)
        self.ff2_w, self.ff2_b = _stacked(k, F_, D)
        self.drop = Dropout(cfg.dropout)

    def forward(self, z: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        K, S, N, D = z.shape  # S = batch * channels
        h = F.layer_norm(z, (D,)) * self.ln1_w + self.ln1_b
        qkv = _linear(h.reshape(K, S * N, D), self.qkv_w, self.qkv_b).view(K * S, N, 3, self.n_heads, D // self.n_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each (K*S, heads, N, d), views
        if need_weights:  # the audit reads the weights: the explicit softmax
            w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (K*S, heads, N, N)
            y = F.dropout(w, self.attn_dropout, self.training) @ v
            w = w.view(K, S, *w.shape[1:])
        else:  # fused, on 4-d views (a 5-d input falls back to a slow path): ~3x the explicit softmax here
            w = None
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(K, S * N, D)
        z = z + self.drop(_linear(y, self.out_w, self.out_b).view(K, S, N, D))
        h = F.layer_norm(z, (D,)) * self.ln2_w + self.ln2_b
        f = self.drop(F.gelu(_linear(h.reshape(K, S * N, D), self.ff1_w, self.ff1_b)))
        z = z + self.drop(_linear(f, self.ff2_w, self.ff2_b).view(K, S, N, D))
        return z, (w if need_weights else None)


class PatchTSTStack(nn.Module):
    """K PatchTST members with their weights stacked on a leading member axis: one forward and one
    backward pass train them all (every linear layer is a batched matmul over the members). Member
    k computes exactly what ``PatchTSTClassifier`` computes with member k's weights
    (:meth:`from_members` / :meth:`to_members` convert both ways, so artifacts keep one format).

    The pre-norm encoder (``norm="layernorm"``) only; the post-norm BatchNorm variant stays on the
    reference path (``stackable``).

    Input:
        x: (B, L, C), the same windows for every member, or (K, B, L, C), a batch per member.
    Output:
        logits (K, B, H).
    """

    def __init__(self, cfg: PatchTSTConfig, k: int) -> None:
        super().__init__()
        if not stackable(cfg):
            raise ValueError(f"the stacked path supports norm='layernorm' only, got norm={cfg.norm!r}")
        self.cfg, self.k = cfg, k
        C, D, N, P = cfg.n_channels, cfg.d_model, cfg.n_patches, cfg.patch_len
        if cfg.revin:
            self.revin_w, self.revin_b = nn.Parameter(torch.ones(k, 1, 1, C)), nn.Parameter(torch.zeros(k, 1, 1, C))
        self.patch_w, self.patch_b = _stacked(k, P, D)
        self.pos = _positional_encoding((k, 1, N, D), cfg.pos_init)
        self.drop = Dropout(cfg.dropout)
        self.head_drop = Dropout(cfg.head_dropout)
        self.layers = nn.ModuleList(StackedLayer(cfg, k) for _ in range(cfg.n_layers))
        self.lnf_w, self.lnf_b = nn.Parameter(torch.ones(k, 1, 1, D)), nn.Parameter(torch.zeros(k, 1, 1, D))
        skip = C if cfg.head_skip else 0
        if cfg.head == "channel_mix":
            self.head1_w, self.head1_b = _stacked(k, C * D + skip, cfg.head_hidden)
            self.head2_w, self.head2_b = _stacked(k, cfg.head_hidden, cfg.n_outputs)
        else:
            self.head1_w, self.head1_b = _stacked(k, C * N * D + skip, cfg.n_outputs)

    def forward_with_details(self, x: torch.Tensor, need_weights: bool = False) -> PatchTSTOutput:
        cfg, K = self.cfg, self.k
        if x.dim() == 3:
            x = x.unsqueeze(0).expand(K, *x.shape)
        _, B, L, C = x.shape
        if L != cfg.lookback or C != cfg.n_channels or x.shape[0] != K:
            raise ValueError(f"expected input (B, {cfg.lookback}, {cfg.n_channels}) or ({K}, B, {cfg.lookback}, "
                             f"{cfg.n_channels}), got {tuple(x.shape)}")
        last = x[:, :, -1, :]  # (K, B, C): the head's skip inputs are the raw last session
        if cfg.revin:
            x = instance_norm(x) * self.revin_w + self.revin_b
        xt = x.transpose(2, 3)  # (K, B, C, L)
        if cfg.pad_end:
            xt = torch.cat([xt, xt[..., -1:].expand(*xt.shape[:-1], cfg.stride)], dim=-1)
        patches = xt.unfold(-1, cfg.patch_len, cfg.stride)  # (K, B, C, N, P)
        N, D = patches.shape[3], cfg.d_model
        emb = _linear(patches.reshape(K, B * C * N, cfg.patch_len), self.patch_w, self.patch_b).view(K, B * C, N, D)
        z = self.drop(emb + self.pos)
        attention = []
        for layer in self.layers:
            z, w = layer(z, need_weights)
            if w is not None:
                attention.append(w.reshape(K, B, C, *w.shape[2:]))  # (K, B, C, heads, N, N)
        z = (F.layer_norm(z, (D,)) * self.lnf_w + self.lnf_b).view(K, B, C, N, D)
        encoded = z.mean(dim=3).reshape(K, B, C * D) if cfg.head == "channel_mix" else z.reshape(K, B, C * N * D)
        rep = torch.cat([encoded, last], dim=-1) if cfg.head_skip else encoded
        if cfg.head == "channel_mix":
            hidden = F.gelu(_linear(self.head_drop(rep), self.head1_w, self.head1_b))
            logits = _linear(self.head_drop(hidden), self.head2_w, self.head2_b)
        else:
            logits = _linear(self.head_drop(rep), self.head1_w, self.head1_b)
        return PatchTSTOutput(logits=logits, attention=attention, representation=rep,
                              encoder_representation=encoded, patch_embedding=emb.view(K, B, C, N, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_details(x).logits

    def output_bias(self) -> torch.Tensor:
        """The last layer's bias, (K, 1, H)."""
        return self.head2_b if self.cfg.head == "channel_mix" else self.head1_b

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``nn.utils.clip_grad_norm_`` for each member on its own slice: (K,) norms before clipping."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        sq = torch.stack([g.pow(2).reshape(self.k, -1).sum(dim=1) for g in grads]).sum(dim=0)  # (K,)
        norms = sq.sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(self.k, *([1] * (g.dim() - 1))))
        return norms

    # -- conversion to and from the reference modules (what artifacts store)

    def _pairs(self, member: PatchTSTClassifier) -> list[tuple[nn.Parameter, torch.Tensor, bool]]:
        """(stacked parameter, the member's tensor, transposed?) for every weight."""
        m = member
        pairs = [(self.patch_w, m.patch_proj.weight, True), (self.patch_b, m.patch_proj.bias, False),
                 (self.pos, m.pos, False), (self.lnf_w, m.final_norm.weight, False),
                 (self.lnf_b, m.final_norm.bias, False)]
        if self.cfg.revin:
            pairs += [(self.revin_w, m.revin.weight, False), (self.revin_b, m.revin.bias, False)]
        for s, r in zip(self.layers, m.layers):
            pairs += [(s.ln1_w, r.norm1.weight, False), (s.ln1_b, r.norm1.bias, False),
                      (s.qkv_w, r.attn.qkv.weight, True), (s.qkv_b, r.attn.qkv.bias, False),
                      (s.out_w, r.attn.out.weight, True), (s.out_b, r.attn.out.bias, False),
                      (s.ln2_w, r.norm2.weight, False), (s.ln2_b, r.norm2.bias, False),
                      (s.ff1_w, r.ff[0].weight, True), (s.ff1_b, r.ff[0].bias, False),
                      (s.ff2_w, r.ff[3].weight, True), (s.ff2_b, r.ff[3].bias, False)]
        if self.cfg.head == "channel_mix":
            pairs += [(self.head1_w, m.head[1].weight, True), (self.head1_b, m.head[1].bias, False),
                      (self.head2_w, m.head[4].weight, True), (self.head2_b, m.head[4].bias, False)]
        else:
            pairs += [(self.head1_w, m.head[1].weight, True), (self.head1_b, m.head[1].bias, False)]
        return pairs

    @classmethod
    def from_members(cls, members: list[PatchTSTClassifier]) -> PatchTSTStack:
        if not members or any(m.cfg != members[0].cfg for m in members):
            raise ValueError("stacked members must be at least one and share one config")
        stack = cls(members[0].cfg, len(members))
        with torch.no_grad():
            for i, member in enumerate(members):
                for target, source, transposed in stack._pairs(member):
                    target[i].copy_((source.T if transposed else source).reshape(target[i].shape))
        return stack.to(next(members[0].parameters()).device)

    def to_members(self) -> list[PatchTSTClassifier]:
        members = [PatchTSTClassifier(self.cfg) for _ in range(self.k)]
        with torch.no_grad():
            for i, member in enumerate(members):
                for source, target, transposed in self._pairs(member):
                    value = source[i].detach().to("cpu")
                    target.copy_((value.reshape(target.T.shape).T if transposed else value.reshape(target.shape)))
        for member in members:
            member.eval()
        return members


@torch.no_grad()
def start_at_prior(model: nn.Module, prior) -> None:
    """Set the output bias to the logit of the training prior (per horizon), so that the untrained
    model predicts about the prior instead of ~0.5: its loss starts near the prior's, and training
    spends no epochs walking the bias there (the usual initialisation for imbalanced targets)."""
    p = torch.as_tensor(prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    bias = model.output_bias()
    bias.copy_(torch.log(p / (1 - p)).to(bias.device).expand_as(bias))


def stackable(cfg: PatchTSTConfig) -> bool:
    return cfg.norm == "layernorm"


def attention_entropy_ratio(attention: list[torch.Tensor]) -> float:
    """Mean attention entropy over log(N): 1.0 means perfectly uniform (degenerate) attention."""
    if not attention:
        return float("nan")
    ratios = []
    for w in attention:  # (B, C, heads, N, N)
        n = w.shape[-1]
        ent = -(w.clamp_min(1e-12) * w.clamp_min(1e-12).log()).sum(-1)
        ratios.append(float(ent.mean() / math.log(n)))
    return sum(ratios) / len(ratios)

