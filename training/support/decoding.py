"""Greedy decoding of Llama-family models on a CPU, without the per-token overhead of ``generate``.

A reply of 60 tokens from SmolLM2-135M runs 30 decoder layers per token. In transformers'
eager ``generate`` about half of a token's time goes to Python and small tensor ops around the
matrix products (mask building, cache bookkeeping, seven separate projections per layer), and
dynamic int8 quantisation with one scale per tensor degrades the replies noticeably. This
decoder reads the weights of a ``LlamaForCausalLM`` once, fuses q/k/v and gate/up into one
projection each, keeps the KV cache in preallocated tensors, and optionally quantises the
projections to int8 with one scale per output channel. In fp32 it writes the same tokens as
``model.generate(do_sample=False)``. ``sample`` writes several candidates to one prompt in
one batch: the prompt is read once and its KV cache shared. Other architectures keep using
``generate``.
"""

from __future__ import annotations

import logging
import threading
import warnings
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# Threads of a decode step (one new token per row). A decode step is a row of small matrix
# products, and each parallel region waits at its barrier for every thread: on a quiet 2-core
# machine four int8 60-token replies to a 284-token prompt took 1.41 s on 2 threads against
# 1.74 s on 1 (medians of 4, alternating in one process), but on a machine other processes
# kept at a load of 4 one reply took 4.0 and 60 s on 2 threads against 5.6 and 3.7 s on 1.
# The decoder's default is 1; the support service sets its own (SHOPML_SUPPORT_DECODE_THREADS).
# The prompt (one large product) keeps the caller's thread count.
DECODE_THREADS = 1

# Decodes on more than one thread take turns: two at once would ask for more threads than the
# cores, the case where a barrier waits for a descheduled thread. One-thread decodes run side
# by side.
_PARALLEL_DECODE = threading.Lock()

# The KV cache's length is rounded up to a multiple of this: a decode step has the same shapes
# for every prompt in one bucket, so one TorchScript trace of it serves them all.
CACHE_BUCKET = 64

# Tokens a sampled row draws from before the nucleus cut (transformers' default top_k). Sorting
# the whole 49k vocabulary for every step took 0.7 of a 3.3 s batch of four 60-token replies.
SAMPLE_TOP_K = 50


def _turn(n: int | None):
    """The lock a decode on ``n`` threads holds while it runs (none for one thread)."""
    return _PARALLEL_DECODE if n is not None and n > 1 else nullcontext()


@contextmanager
def threads(n: int | None):
    """torch's intra-op thread count set to ``n`` (None: unchanged) inside the block."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def supports(model) -> bool:
    """True for a plain (LoRA merged) Llama causal LM this decoder reproduces exactly."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "LlamaForCausalLM"
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "pretraining_tp", 1) == 1
        and all(isinstance(m, nn.Linear) for layer in model.model.layers for m in _projections(layer))
    )


def eos_ids(model) -> list[int]:
    """The token ids that end a reply, as ``generate`` reads them."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    return [eos] if isinstance(eos, int) else list(eos or [])


def _projections(layer) -> list[nn.Module]:
    a, m = layer.self_attn, layer.mlp
    return [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]


def _fused(*linears: nn.Linear) -> nn.Linear:
    """One projection for several; a single one shares the model's weight (no copy)."""
    weight = (
        linears[0].weight.detach()
        if len(linears) == 1
        else torch.cat([lin.weight.detach() for lin in linears])
    )
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    return fused


class _Layer(nn.Module):
    def __init__(self, layer) -> None:
        super().__init__()
        a, m = layer.self_attn, layer.mlp
        self.qkv = _fused(a.q_proj, a.k_proj, a.v_proj)
        self.o = _fused(a.o_proj)
        self.gate_up = _fused(m.gate_proj, m.up_proj)
        self.down = _fused(m.down_proj)
        self.input_norm = layer.input_layernorm.weight.detach()
        self.post_norm = layer.post_attention_layernorm.weight.detach()


class LlamaDecoder(nn.Module):
    """Greedy decoding, and several sampled replies to one prompt in one batch, with a
    preallocated KV cache; ``int8`` for CPU serving.

    Decode steps (one token per row) write the cache at a position given as a tensor and
    attend over the whole cache with a mask, so their shapes do not change from step to step;
    ``traced``: they run through a TorchScript trace per (rows, cache length), because a step
    is about 1,400 small ops over 30 layers and Python's dispatch of each costs more than its
    arithmetic. A model the tracer cannot follow decodes eagerly, with a warning.
    """

    def __init__(
        self, model, int8: bool = False, decode_threads: int | None = DECODE_THREADS, traced: bool = True
    ) -> None:
        super().__init__()
        self.decode_threads = decode_threads
        self.traced = traced
        self._traces: dict[tuple[int, int], torch.jit.ScriptModule | None] = {}
        if not supports(model):
            raise ValueError(f"{type(model).__name__} is not a plain Llama causal LM")
        from transformers.activations import ACT2FN

        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.eos_ids = eos_ids(model)
        self.eps = config.rms_norm_eps
        self.act = ACT2FN[config.hidden_act]
        self.embed = model.model.embed_tokens
        self.rotary = model.model.rotary_emb  # transformers' own: every rope variant it knows
        self.final_norm = model.model.norm.weight.detach()
        self.layers = nn.ModuleList(_Layer(layer) for layer in model.model.layers)
        self.lm_head = _fused(model.lm_head)
        if int8:
            from training.support.int8 import int8_linears

            # Only the fused projections and the output head; the embedding stays fp32.
            int8_linears(self.layers)
            self.lm_head = int8_linears(nn.Sequential(self.lm_head))[0]

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def _caches(self, batch: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of every layer, (layers, batch, kv heads, length, head dim) each;
        the length rounded up to ``CACHE_BUCKET``."""
        total = -(-total // CACHE_BUCKET) * CACHE_BUCKET
        shape = (len(self.layers), batch, self.kv_heads, total, self.head_dim)
        return self.final_norm.new_zeros(shape), self.final_norm.new_zeros(shape)

    def _grouped_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One new token's attention, (R, H, 1, D), over the cache (R, KV, T, D): the query
        heads of each key/value head become that head's query rows, so the cache is read in
        place (``enable_gqa`` expands it to every query head; 0.15 against 0.11 ms a layer)."""
        rows, _, _, dim = q.shape
        grouped = q.view(rows, self.kv_heads, self.heads // self.kv_heads, dim)  # (R, KV, G, D)
        return F.scaled_dot_product_attention(grouped, k, v).view(rows, self.heads, 1, dim)

    def _step(self, tokens, start, keys, values, cos, sin) -> torch.Tensor:
        """Logits of the last position after ``tokens`` (B, W) at positions start..start+W.

        A prompt of one row fills every row of the caches (B rows of one prompt share it).
        """
        rows, width = tokens.shape
        end = start + width
        c, s = cos[start:end], sin[start:end]
        split = [self.heads, self.kv_heads, self.kv_heads]
        h = self.embed(tokens)  # (R, W, C)
        for layer, k_cache, v_cache in zip(self.layers, keys, values, strict=True):
            qkv = layer.qkv(self._norm(h, layer.input_norm))
            q, k, v = qkv.view(rows, width, -1, self.head_dim).transpose(1, 2).split(split, dim=1)
            k_cache[:, :, start:end] = self._rotate(k, c, s)  # (B, KV, W, D), broadcast from R=1
            v_cache[:, :, start:end] = v
            q = self._rotate(q, c, s)
            if width == 1:
                attended = self._grouped_attention(q, k_cache[:rows, :, :end], v_cache[:rows, :, :end])
            else:  # the prompt, causal
                attended = F.scaled_dot_product_attention(
                    q, k_cache[:rows, :, :end], v_cache[:rows, :, :end], is_causal=True, enable_gqa=True
                )  # (R, H, W, D)
            h = h + layer.o(attended.transpose(1, 2).reshape(rows, width, -1))
            gate, up = layer.gate_up(self._norm(h, layer.post_norm)).split(self.intermediate, dim=-1)
            h = h + layer.down(self.act(gate) * up)
        return self.lm_head(self._norm(h[:, -1], self.final_norm))  # (R, V)

    def _decode_step(self, tokens, start, keys, values, cos, sin) -> torch.Tensor:
        """Logits after one new token per row (``tokens`` (R, 1)) at position ``start``:
        ``_static_step`` through its trace, or eagerly (the same ops, so the same tokens: int8
        activations round differently after the slightest change in the order of a sum, so a
        reply must not depend on whether a trace was made)."""
        step = self._trace(tokens.shape[0], keys) if self.traced else None
        return (step or self._static_step)(tokens, torch.tensor([start]), keys, values, cos, sin)

    def _static_step(self, tokens, position, keys, values, cos, sin) -> torch.Tensor:
        """``_step`` for one token per row with shapes that do not depend on the position
        (a (1,) tensor): the cache is written with ``index_copy_`` and read whole, masked."""
        rows = tokens.shape[0]
        c, s = cos.index_select(0, position), sin.index_select(0, position)  # (1, D)
        visible = (torch.arange(keys.shape[3]) <= position).view(1, 1, 1, -1)  # (1, 1, 1, T)
        split = [self.heads, self.kv_heads, self.kv_heads]
        groups = self.heads // self.kv_heads
        h = self.embed(tokens)  # (R, 1, C)
        for layer, k_cache, v_cache in zip(self.layers, keys, values, strict=True):
            qkv = layer.qkv(self._norm(h, layer.input_norm))
            q, k, v = qkv.view(rows, 1, -1, self.head_dim).transpose(1, 2).split(split, dim=1)
            k_cache.index_copy_(2, position, self._rotate(k, c, s))  # (R, KV, T, D)
            v_cache.index_copy_(2, position, v)
            grouped = self._rotate(q, c, s).view(rows, self.kv_heads, groups, self.head_dim)
            attended = F.scaled_dot_product_attention(grouped, k_cache, v_cache, attn_mask=visible)
            h = h + layer.o(attended.reshape(rows, 1, -1))
            gate, up = layer.gate_up(self._norm(h, layer.post_norm)).split(self.intermediate, dim=-1)
            h = h + layer.down(self.act(gate) * up)
        return self.lm_head(self._norm(h[:, -1], self.final_norm))  # (R, V)

    def _trace(self, rows: int, keys: torch.Tensor) -> torch.jit.ScriptModule | None:
        """The decode-step trace for ``rows`` rows and this cache length, made on first use."""
        key = (rows, keys.shape[3])
        if key not in self._traces:
            try:
                # Outside inference mode: the trace writes its example caches in place.
                with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    example = (
                        torch.zeros(rows, 1, dtype=torch.long),
                        torch.tensor([0]),
                        torch.zeros(keys.shape, dtype=keys.dtype),
                        torch.zeros(keys.shape, dtype=keys.dtype),
                        *(t.clone() for t in self._rope(keys.shape[3])),
                    )
                    self._traces[key] = torch.jit.trace(_StaticStep(self), example, check_trace=False)
            except Exception as e:  # a model the tracer cannot follow still decodes, eagerly
                log.warning("decode step not traced (%s); decoding eagerly", e)
                self._traces[key] = None
        return self._traces[key]

    def _rope(self, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.rotary(self.final_norm[None], torch.arange(total)[None])
        return cos[0].to(self.final_norm.dtype), sin[0].to(self.final_norm.dtype)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, min_new_tokens: int = 0) -> list[int]:
        """New token ids for ``input_ids`` (shape [1, n]); stops after an EOS (not returned)."""
        keys, values = self._caches(1, input_ids.shape[1] + max_new_tokens)
        cos, sin = self._rope(keys.shape[3])
        new: list[int] = []
        logits = self._step(input_ids, 0, keys, values, cos, sin)
        start = input_ids.shape[1]
        with _turn(self.decode_threads), threads(self.decode_threads):
            while True:
                if len(new) < min_new_tokens:
                    logits[:, self.eos_ids] = float("-inf")
                token = int(logits.argmax(-1))
                if token in self.eos_ids:
                    break
                new.append(token)
                if len(new) == max_new_tokens:
                    break
                logits = self._decode_step(torch.tensor([[token]]), start, keys, values, cos, sin)
                start += 1
        return new

    @torch.inference_mode()
    def sample(
        self,
        input_ids: torch.Tensor,
        num: int,
        max_new_tokens: int,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int = 0,
        greedy_first: bool = True,
        min_new_tokens: int = 0,
    ) -> list[list[int]]:
        """``num`` replies to one prompt ([1, n]) in one batched pass: the prompt is read once,
        its KV cache shared by every row, then all rows decode together (on a CPU a decode
        step reads every weight once whatever the batch, so 4 rows cost little more than 1).

        Row 0 is the greedy reply when ``greedy_first`` (the same tokens as ``generate``); the
        others sample with ``temperature`` and nucleus ``top_p`` from a generator seeded with
        ``seed``, so the same seed gives the same replies. Each row stops at its EOS.
        """
        if num < 1:
            raise ValueError("num must be at least 1")
        keys, values = self._caches(num, input_ids.shape[1] + max_new_tokens)
        cos, sin = self._rope(keys.shape[3])
        rng = torch.Generator().manual_seed(seed)
        eos = torch.tensor(self.eos_ids, dtype=torch.long)
        out = torch.zeros((num, max_new_tokens), dtype=torch.long)
        done = torch.zeros(num, dtype=torch.bool)
        lengths = torch.full((num,), max_new_tokens, dtype=torch.long)
        logits = self._step(input_ids, 0, keys, values, cos, sin).expand(num, -1)  # (B, V)
        start = input_ids.shape[1]
        with _turn(self.decode_threads), threads(self.decode_threads):
            for i in range(max_new_tokens):
                logits = logits.float()
                if i < min_new_tokens:
                    logits = logits.clone()
                    logits[:, self.eos_ids] = float("-inf")
                token = sample_tokens(logits, temperature, top_p, rng)
                if greedy_first:
                    token[0] = logits[0].argmax()
                ended = ~done & torch.isin(token, eos)
                lengths[ended] = i
                done |= ended
                out[:, i] = token
                if bool(done.all()) or i == max_new_tokens - 1:
                    break
                logits = self._decode_step(token[:, None], start, keys, values, cos, sin)
                start += 1
        return [out[r, : int(lengths[r])].tolist() for r in range(num)]


class _StaticStep(nn.Module):
    def __init__(self, decoder: LlamaDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens, position, keys, values, cos, sin) -> torch.Tensor:
        return self.decoder._static_step(tokens, position, keys, values, cos, sin)


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, rng: torch.Generator, top_k: int = SAMPLE_TOP_K
) -> torch.Tensor:
    """One token per row of (B, V) logits: the ``top_k`` most likely tokens, softmax at
    ``temperature``, then the smallest set of them whose probability reaches ``top_p``
    (nucleus sampling), drawn with ``rng``: transformers' order of top-k then top-p."""
    if temperature <= 0:
        return logits.argmax(-1)
    values, order = logits.topk(min(top_k, logits.shape[-1]), dim=-1)  # sorted, most likely first
    probs = torch.softmax(values / temperature, dim=-1)
    # Keep a token while the mass before it is under top_p: the first token always stays.
    keep = probs.cumsum(-1) - probs < top_p
    keep[:, 0] = True
    picked = torch.multinomial(probs * keep, 1, generator=rng)  # (B, 1), renormalised by multinomial
    return order.gather(-1, picked).squeeze(-1)
