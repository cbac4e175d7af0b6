from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from training.support.decoding import LlamaDecoder, supports
from training.support.generator import Generator, load_base


@pytest.fixture
def tiny_lm(tiny_lm_dir, tmp_path):
    return load_base(str(tiny_lm_dir), tmp_path)


def hf_greedy(
    model, input_ids: torch.Tensor, new_tokens: int, min_new_tokens: int | None = None
) -> list[int]:
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        pad_token_id=model.config.pad_token_id,
    )
    new = out[0, input_ids.shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    return new[: new.index(eos)] if eos in new else new


def prompt_ids(tokenizer, text: str = "Shopper: where is my order?\nAgent:") -> torch.Tensor:
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


def test_fp32_decoder_writes_the_same_tokens_as_generate(tiny_lm):
    model, tokenizer, _ = tiny_lm
    decoder = LlamaDecoder(model)
    for text in ("Shopper: where is my order?\nAgent:", "cancel", "refund " * 40):
        ids = prompt_ids(tokenizer, text)
        assert decoder.generate(ids, 12, min_new_tokens=12) == hf_greedy(model, ids, 12, 12)
        assert decoder.generate(ids, 12) == hf_greedy(model, ids, 12)


def test_decoder_stops_at_eos_unless_told_to_write_more(tiny_lm_dir, tmp_path):
    model, tokenizer, _ = load_base(str(tiny_lm_dir), tmp_path)
    eos = model.generation_config.eos_token_id
    with torch.no_grad():  # tied weights: a long EOS row makes EOS win every step
        model.model.embed_tokens.weight[eos] *= 1000
    ids = prompt_ids(tokenizer)
    decoder = LlamaDecoder(model)
    assert decoder.generate(ids, 8) == [] == hf_greedy(model, ids, 8)
    forced = decoder.generate(ids, 8, min_new_tokens=8)
    assert len(forced) == 8 and eos not in forced
    assert forced == hf_greedy(model, ids, 8, 8)


def test_int8_decoder_quantises_per_channel_and_releases_the_fp32_model(tiny_lm):
    model, tokenizer, info = tiny_lm
    generator = Generator(model, tokenizer, info, 6)
    fp32_text = generator.generate([("user", "where is my order")], ["p"], exact=True)
    generator.quantize()
    assert generator.model is None
    linears = [m for m in generator.decoder.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(linears) == 4 * model.config.num_hidden_layers + 1
    assert all(m.weight().qscheme() == torch.per_channel_affine for m in linears)
    text = generator.generate([("user", "where is my order")], ["p"], exact=True)
    assert text and fp32_text


def test_other_architectures_fall_back_to_generate(tiny_lm):
    model, tokenizer, info = tiny_lm
    config = LlamaConfig(**{**model.config.to_dict(), "attention_bias": True})
    biased = LlamaForCausalLM(config).eval()
    assert supports(model) and not supports(biased)
    with pytest.raises(ValueError, match="not a plain Llama"):
        LlamaDecoder(biased)
    generator = Generator(biased, tokenizer, info, 4)
    assert isinstance(generator.generate([("user", "hi")], ["p"], exact=True), str)
    assert generator.decoder is None
    generator.quantize()
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in generator.model.modules())
    assert isinstance(generator.generate([("user", "hi")], ["p"], exact=True), str)
