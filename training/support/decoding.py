"""Greedy decoding of Llama-family models on a CPU, without the per-token overhead of ``generate``.

A reply of 60 tokens from SmolLM2-135M runs 30 decoder layers per token. In transformers'
eager ``generate`` about half of a token's time goes to Python and small tensor ops around the
matrix products (mask building, cache bookkeeping, seven separate projections per layer), and
dynamic int8 quantisation with one scale per tensor degrades the replies noticeably. This
decoder reads the weights of a ``LlamaForCausalLM`` once, fuses q/k/v and gate/up into one
projection each, keeps the KV cache in preallocated tensors, and optionally quantises the
projections to int8 with one scale per output channel. In fp32 it writes the same tokens as
``model.generate(do_sample=False)``. Other architectures keep using ``generate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
    """Batch-of-one greedy decoding with a preallocated KV cache; ``int8`` for CPU serving."""

    def __init__(self, model, int8: bool = False) -> None:
        super().__init__()
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

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, min_new_tokens: int = 0) -> list[int]:
        """New token ids for ``input_ids`` (shape [1, n]); stops after an EOS (not returned)."""
        prompt_len = input_ids.shape[1]
        total = prompt_len + max_new_tokens
        cos, sin = self.rotary(self.final_norm[None], torch.arange(total)[None])
        cos, sin = cos[0].to(self.final_norm.dtype), sin[0].to(self.final_norm.dtype)
        shape = (1, self.kv_heads, total, self.head_dim)
        keys = [self.final_norm.new_zeros(shape) for _ in self.layers]
        values = [self.final_norm.new_zeros(shape) for _ in self.layers]
        split = [self.heads, self.kv_heads, self.kv_heads]
        new: list[int] = []
        tokens, start = input_ids, 0
        while len(new) < max_new_tokens:
            width = tokens.shape[1]
            end = start + width
            c, s = cos[start:end], sin[start:end]
            h = self.embed(tokens)
            for layer, k_cache, v_cache in zip(self.layers, keys, values, strict=True):
                qkv = layer.qkv(self._norm(h, layer.input_norm))
                q, k, v = qkv.view(1, width, -1, self.head_dim).transpose(1, 2).split(split, dim=1)
                k_cache[:, :, start:end] = self._rotate(k, c, s)
                v_cache[:, :, start:end] = v
                attended = F.scaled_dot_product_attention(
                    self._rotate(q, c, s),
                    k_cache[:, :, :end],
                    v_cache[:, :, :end],
                    is_causal=width > 1,  # the prompt; a single new token sees everything
                    enable_gqa=True,
                )
                h = h + layer.o(attended.transpose(1, 2).reshape(1, width, -1))
                gate, up = layer.gate_up(self._norm(h, layer.post_norm)).split(self.intermediate, dim=-1)
                h = h + layer.down(self.act(gate) * up)
            logits = self.lm_head(self._norm(h[:, -1], self.final_norm))
            if len(new) < min_new_tokens:
                logits[:, self.eos_ids] = float("-inf")
            token = int(logits.argmax(-1))
            if token in self.eos_ids:
                break
            new.append(token)
            tokens, start = torch.tensor([[token]]), end
        return new
