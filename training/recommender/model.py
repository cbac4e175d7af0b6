"""A SASRec-family sequential recommender: a plain ``nn.Module`` with a dataclass config.

Item index 0 is padding; items are 1..num_items. Sequences are left-padded so that the
newest item always sits in the last position and learned positions count back from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


def config_from_dict(cls, values: dict, what: str):
    """``cls(**values)``, refusing names it does not know (a model file from another version)."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields: {sorted(unknown)}")
    return cls(**values)


@dataclass
class RecommenderConfig:
    """Shape and regularisation of the model; everything needed to rebuild it from JSON."""

    num_items: int  # catalogue size without padding; item indices run 1..num_items
    max_len: int = 200  # longest input sequence; older items are cut off
    hidden: int = 64  # width of item embeddings and of the transformer
    num_blocks: int = 2  # causal self-attention blocks
    num_heads: int = 1  # attention heads per block (hidden must divide by it)
    ffn_mult: int = 1  # feed-forward width as a multiple of hidden (SASRec uses 1)
    dropout: float = 0.2  # on embeddings and on the attention and feed-forward outputs
    attn_dropout: float = 0.0  # on attention weights; off by default, costly on CPU for little gain
    num_categories: int = 0  # category side feature; 0 disables it (index 0 = unknown)
    # Categories an item may carry (a catalog's one category; a category path and a brand):
    # the item's category vector is the mean of its categories' embeddings.
    category_slots: int = 1
    num_price_buckets: int = 0  # price-bucket side feature; 0 disables it (index 0 = unknown)
    text_dim: int = 0  # width of the frozen text embedding; 0 disables the text projection
    # With text features, the share of items whose id vector is hidden in each training
    # pass, so the text projection alone must rank them: what a new item will face.
    id_dropout: float = 0.1
    # The item-to-item prior added to the scores (``SASRec.set_prior``): each item keeps its
    # ``prior_neighbours`` most frequent followers in training; a history's newest
    # ``prior_recent`` items add their followers' counts, weighted ``prior_decay ** age``,
    # times ``prior_weight``. 0 neighbours: no prior. Set after training, on validation.
    prior_neighbours: int = 0
    prior_recent: int = 3
    prior_decay: float = 0.6
    prior_weight: float = 0.0
    # A second prior from a linear item-to-item model (EASE, ``SASRec.set_ease_prior``): each
    # item keeps its ``ease_prior_neighbours`` largest positive weights; every item of a
    # history adds them (EASE reads the whole history), times ``ease_prior_weight``.
    ease_prior_neighbours: int = 0
    ease_prior_weight: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RecommenderConfig:
        return config_from_dict(cls, values, "recommender")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        if config.hidden % config.num_heads:
            raise ValueError(f"hidden={config.hidden} must divide by num_heads={config.num_heads}")
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)
        self.dropout = config.attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, C/heads)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block: attention then feed-forward, each with a residual."""

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.hidden)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.hidden)
        inner = config.hidden * config.ffn_mult
        # No dropout inside the feed-forward: on a CPU each dropout mask costs about as
        # much as a matmul here, and the residual dropout below regularises the block.
        self.ffn = nn.Sequential(nn.Linear(config.hidden, inner), nn.GELU(), nn.Linear(inner, config.hidden))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    """Sequence of item indices in, one representation per position out.

    The same item table embeds the input and scores the output (tied weights), so
    ``scores = hidden @ item_table().T``. Side features add to an item's id embedding; the
    text projection gives an item that never appeared in training a usable vector.
    """

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        self.config = config
        n = config.num_items + 1
        self.item_emb = nn.Embedding(n, config.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_blocks))
        self.ln_f = nn.LayerNorm(config.hidden)
        # Items without training interactions (cold items) have an untrained id vector;
        # this mask swaps it for zero so they are scored from their side features alone.
        self.register_buffer("item_has_id", torch.ones(n, dtype=torch.bool), persistent=True)
        if config.num_categories:
            self.cat_emb = nn.Embedding(config.num_categories + 1, config.hidden, padding_idx=0)
            self.register_buffer("item_category", torch.zeros(n, config.category_slots, dtype=torch.long))
        if config.num_price_buckets:
            self.price_emb = nn.Embedding(config.num_price_buckets + 1, config.hidden, padding_idx=0)
            self.register_buffer("item_price_bucket", torch.zeros(n, dtype=torch.long))
        if config.text_dim:
            # The text vectors are frozen inputs; only the projection learns.
            self.register_buffer("item_text", torch.zeros(n, config.text_dim))
            self.text_proj = nn.Linear(config.text_dim, config.hidden, bias=False)
        if config.prior_neighbours:
            self._prior_buffers("prior_items", "prior_counts", config.prior_neighbours)
        if config.ease_prior_neighbours:
            self._prior_buffers("ease_prior_items", "ease_prior_values", config.ease_prior_neighbours)
        self.apply(self._init_weights)

    def _prior_buffers(self, items: str, values: str, k: int) -> None:
        """A prior's two (N+1, K) tables: each item's neighbours (0 = none) and their values."""
        n = self.config.num_items + 1
        self.register_buffer(items, torch.zeros(n, k, dtype=torch.long))
        self.register_buffer(values, torch.zeros(n, k))

    def _copy_prior(self, names: tuple[str, str], items: torch.Tensor, values: torch.Tensor) -> None:
        n = self.config.num_items + 1
        if items.shape != values.shape or items.dim() != 2 or items.shape[0] != n:
            raise ValueError(
                f"prior tables must both be ({n}, K); got {tuple(items.shape)}, {tuple(values.shape)}"
            )
        self._prior_buffers(*names, items.shape[1])
        getattr(self, names[0]).copy_(items)
        getattr(self, names[1]).copy_(values)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Models saved before items could carry several categories held one per item.
        key = prefix + "item_category"
        if key in state_dict and state_dict[key].dim() == 1:
            state_dict[key] = state_dict[key].unsqueeze(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def set_side_features(
        self,
        category: torch.Tensor | None = None,
        price_bucket: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        has_id: torch.Tensor | None = None,
    ) -> None:
        """Load per-item side features, each indexed by item index (row 0 = padding)."""
        n = self.config.num_items + 1
        for name, value in (
            ("item_category", category),
            ("item_price_bucket", price_bucket),
            ("item_text", text),
            ("item_has_id", has_id),
        ):
            if value is None:
                continue
            if not hasattr(self, name):
                raise ValueError(f"{name} given but the config disables that feature")
            buffer = getattr(self, name)
            if name == "item_category" and value.dim() == 1:
                value = value.unsqueeze(1)  # one category per item
            if value.shape != buffer.shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(buffer.shape)}")
            buffer.copy_(value.to(buffer.dtype))
        if has_id is not None and has_id.shape[0] != n:
            raise ValueError("has_id must have one entry per item plus padding")

    def set_prior(
        self, items: torch.Tensor, counts: torch.Tensor, weight: float, recent: int, decay: float
    ) -> None:
        """Attach an item-to-item prior: ``items``/``counts`` (N+1, K) are each item's K
        followers and how often they followed it (0-padded); see the config's prior fields."""
        self._copy_prior(("prior_items", "prior_counts"), items, counts)
        self.config.prior_neighbours = items.shape[1]
        self.config.prior_weight, self.config.prior_recent, self.config.prior_decay = weight, recent, decay

    def set_ease_prior(self, items: torch.Tensor, values: torch.Tensor, weight: float) -> None:
        """Attach the linear prior: ``items``/``values`` (N+1, K) are each item's K largest
        positive EASE weights (0-padded), added for every item of a history."""
        self._copy_prior(("ease_prior_items", "ease_prior_values"), items, values)
        self.config.ease_prior_neighbours, self.config.ease_prior_weight = items.shape[1], weight

    def prior_scores(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded histories -> (B, N+1) unweighted prior: the decayed follower
        counts of the newest ``prior_recent`` items (padding has no followers)."""
        return neighbour_scores(
            seq, self.prior_items, self.prior_counts, self.config.prior_recent, self.config.prior_decay
        )

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Representation of ``items`` (any shape), or of the whole table (N+1, C)."""
        idx = (
            items
            if items is not None
            else torch.arange(self.item_emb.num_embeddings, device=self.item_emb.weight.device)
        )
        keep = self.item_has_id
        if self.training and self.config.text_dim and self.config.id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.config.id_dropout)
        vec = self.item_emb(idx) * keep[idx].unsqueeze(-1).to(self.item_emb.weight.dtype)
        if self.config.num_categories:
            categories = self.item_category[idx]  # (..., slots), 0 = no category
            count = (categories > 0).sum(-1, keepdim=True).clamp(min=1).to(vec.dtype)
            vec = vec + self.cat_emb(categories).sum(-2) / count
        if self.config.num_price_buckets:
            vec = vec + self.price_emb(self.item_price_bucket[idx])
        if self.config.text_dim:
            vec = vec + self.text_proj(self.item_text[idx])
        return vec

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded item indices -> (B, T, C) representations."""
        B, T = seq.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.config.max_len}")
        valid = seq > 0
        x = self.item_vectors(seq) * math.sqrt(self.config.hidden)
        pos = torch.arange(self.config.max_len - T, self.config.max_len, device=seq.device)
        x = self.emb_drop(x + self.pos_emb(pos)) * valid.unsqueeze(-1)
        # (B, 1, T, T): causal, no padded keys; each position may always see itself so a
        # fully padded row is never all-masked (those rows are ignored by the loss anyway).
        causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()
        mask = causal & (valid.unsqueeze(1) | torch.eye(T, dtype=torch.bool, device=seq.device))
        mask = mask.unsqueeze(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def full_sort_scores(self, seq: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) histories -> (B, N+1) scores of every item for the next step; column 0 is -inf.
        ``item_table``: ``item_vectors()`` computed once by a caller whose weights are fixed
        (serving), instead of again for every call."""
        h = self(seq)[:, -1, :]  # (B, C)
        scores = h @ (self.item_vectors() if item_table is None else item_table).T
        if self.config.prior_neighbours and self.config.prior_weight:
            scores = scores + self.config.prior_weight * self.prior_scores(seq).to(scores.dtype)
        if self.config.ease_prior_neighbours and self.config.ease_prior_weight:
            ease = neighbour_scores(seq, self.ease_prior_items, self.ease_prior_values, seq.shape[1], 1.0)
            scores = scores + self.config.ease_prior_weight * ease.to(scores.dtype)
        scores[:, 0] = float("-inf")
        return scores


def neighbour_scores(
    seq: torch.Tensor, items: torch.Tensor, counts: torch.Tensor, recent: int, decay: float
) -> torch.Tensor:
    """(B, T) left-padded histories -> (B, N+1): the ``counts`` of the neighbours ``items``
    (both (N+1, K)) of each history's newest ``recent`` items, weighted ``decay ** age``."""
    newest = seq[:, -recent:]  # (B, R), newest last
    B, R = newest.shape
    age = torch.arange(R - 1, -1, -1, device=seq.device)
    w = (decay ** age.to(counts.dtype)) * (newest > 0)  # (B, R); padding has no neighbours
    values = (counts[newest] * w.unsqueeze(-1)).reshape(B, -1)  # (B, R*K)
    out = torch.zeros(B, items.shape[0], dtype=values.dtype, device=seq.device)
    return out.scatter_add_(1, items[newest].reshape(B, -1), values)
