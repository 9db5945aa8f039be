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
    stride: int = 2
    pad_end: bool = True  # replicate the last value `stride` times (official "end" padding)
    d_model: int = 16
    n_heads: int = 2
    n_layers: int = 2
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


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis of each window and channel."""

    def __init__(self, n_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, C)
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        return (x - mean) / std * self.weight + self.bias


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
        pos = torch.empty(1, n, cfg.d_model)
        if cfg.pos_init == "uniform":
            nn.init.uniform_(pos, -0.02, 0.02)
        else:
            nn.init.normal_(pos, 0.0, 1.0)
        self.pos = nn.Parameter(pos)
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

