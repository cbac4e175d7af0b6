from __future__ import annotations

import threading
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from training.support.decoding import LlamaDecoder, sample_tokens, supports
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


def test_batched_sampling_writes_num_replies_greedy_first_and_is_seeded(tiny_lm):
    model, tokenizer, _ = tiny_lm
    decoder = LlamaDecoder(model)
    ids = prompt_ids(tokenizer)
    rows = decoder.sample(ids, 4, 10, temperature=1.0, top_p=0.95, seed=3, min_new_tokens=10)
    assert len(rows) == 4 and all(len(r) == 10 for r in rows)
    # Row 0 reads the shared prompt cache like a batch of one: the greedy reply.
    assert rows[0] == decoder.generate(ids, 10, min_new_tokens=10) == hf_greedy(model, ids, 10, 10)
    assert decoder.sample(ids, 4, 10, temperature=1.0, top_p=0.95, seed=3, min_new_tokens=10) == rows
    other = decoder.sample(ids, 4, 10, temperature=1.0, top_p=0.95, seed=4, min_new_tokens=10)
    assert other[0] == rows[0] and other[1:] != rows[1:]
    assert len({tuple(r) for r in rows[1:]}) > 1  # the sampled rows differ from each other
    # Not greedy first, and a temperature of 0: every row is the greedy reply.
    assert decoder.sample(ids, 3, 10, temperature=0.0, greedy_first=False, min_new_tokens=10) == [rows[0]] * 3


def test_sampled_rows_stop_at_their_own_eos(tiny_lm_dir, tmp_path):
    model, tokenizer, _ = load_base(str(tiny_lm_dir), tmp_path)
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        model.model.embed_tokens.weight[eos] *= 1000  # EOS wins every step
    decoder = LlamaDecoder(model)
    assert decoder.sample(prompt_ids(tokenizer), 3, 8, seed=0) == [[], [], []]
    forced = decoder.sample(prompt_ids(tokenizer), 3, 8, seed=0, min_new_tokens=8)
    assert all(len(r) == 8 and eos not in r for r in forced)


def test_nucleus_sampling_keeps_the_smallest_set_reaching_top_p():
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps the first two tokens only.
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]])).expand(2000, -1)
    drawn = sample_tokens(logits, 1.0, 0.7, torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=4).float() / 2000
    assert counts[0] == 0 and counts[2] == 0
    assert counts[1] == pytest.approx(0.5 / 0.8, abs=0.04) and counts[3] == pytest.approx(0.3 / 0.8, abs=0.04)
    # top_p 0: only the most likely token; temperature 0: argmax.
    assert set(sample_tokens(logits, 1.0, 0.0, torch.Generator().manual_seed(0)).tolist()) == {1}
    assert set(sample_tokens(logits, 0.0, 0.9, torch.Generator()).tolist()) == {1}


def test_generator_candidates_one_batched_pass_per_path(tiny_lm):
    model, tokenizer, info = tiny_lm
    turns, passages = [("user", "where is my order")], ["p"]
    generator = Generator(model, tokenizer, info, 8)
    texts = generator.candidates(turns, passages, 4, seed=1, temperature=1.0, exact=True)
    assert 1 < len(texts) <= 4 and len(set(texts)) == len(texts)
    assert texts[0] == generator.generate(turns, passages, exact=True)
    assert generator.candidates(turns, passages, 4, seed=1, temperature=1.0, exact=True) == texts
    # The facts of the products in the conversation are in the prompt the decoder reads.
    with_facts = generator.candidates(
        turns, passages, 4, facts=["Lamp by Acme: $5.00, in stock"], seed=1, exact=True
    )
    assert with_facts != texts
    # Other architectures: transformers' generate, greedy first then num_return_sequences sampled.
    config = LlamaConfig(**{**model.config.to_dict(), "attention_bias": True})
    torch.manual_seed(0)
    biased = Generator(LlamaForCausalLM(config).eval(), tokenizer, info, 8)
    before = torch.random.get_rng_state()
    hf = biased.candidates(turns, passages, 4, seed=1, temperature=1.0, exact=True)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's generator is untouched
    assert 1 < len(hf) <= 4 and hf[0] == biased.generate(turns, passages, exact=True)
    assert biased.candidates(turns, passages, 4, seed=1, temperature=1.0, exact=True) == hf
    assert biased.decoder is None


@pytest.mark.parametrize("decode_threads", [1, 2])
def test_decode_steps_run_on_the_generators_decode_threads(tiny_lm, decode_threads):
    model, tokenizer, info = tiny_lm
    generator = Generator(model, tokenizer, info, 4, decode_threads=decode_threads).quantize()
    seen = []  # (tokens per row, torch threads) of every step
    decoder = generator.decoder

    def recording(step):
        def record(tokens, *args):
            seen.append((tokens.shape[1], torch.get_num_threads()))
            return step(tokens, *args)

        return record

    # The prompt through the eager step, each new token through the traced one.
    decoder._step, decoder._decode_step = recording(decoder._step), recording(decoder._decode_step)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generator.candidates([("user", "where is my order")], ["p"], num=2, exact=True)
    finally:
        torch.set_num_threads(before)
    prompt, *decode = seen
    assert prompt == (prompt[0], 2) and prompt[0] > 1  # the prompt keeps the caller's threads
    assert decode and all(step == (1, decode_threads) for step in decode)


def test_decodes_on_several_threads_take_turns(tiny_lm):
    model, tokenizer, info = tiny_lm
    order = []  # which generator ran each decode step, in the order the steps ran

    def recorded(name: str) -> Generator:
        generator = Generator(model, tokenizer, info, 6, decode_threads=2)
        generator._decoder()
        step = generator.decoder._decode_step

        def recording(tokens, *args):
            order.append(name)
            time.sleep(0.005)  # long enough for the other thread to cut in, were it allowed
            return step(tokens, *args)

        generator.decoder._decode_step = recording
        return generator

    generators = [recorded("a"), recorded("b")]
    workers = [
        threading.Thread(target=g.candidates, args=([("user", "hi")], ["p"], 2), kwargs={"exact": True})
        for g in generators
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(order) == ["a"] * 5 + ["b"] * 5
    assert order in (["a"] * 5 + ["b"] * 5, ["b"] * 5 + ["a"] * 5)  # one decode, then the other


def test_traced_decode_steps_write_what_eager_steps_write(tiny_lm):
    model, tokenizer, _ = tiny_lm
    eager, traced = LlamaDecoder(model, traced=False), LlamaDecoder(model)
    for text in ("Shopper: where is my order?\nAgent:", "refund " * 40):
        ids = prompt_ids(tokenizer, text)
        assert traced.generate(ids, 12, min_new_tokens=12) == eager.generate(ids, 12, min_new_tokens=12)
        assert traced.sample(ids, 4, 10, temperature=1.0, seed=3) == eager.sample(
            ids, 4, 10, temperature=1.0, seed=3
        )
    # One trace per (rows, cache length bucket), made once and kept.
    assert traced._traces and all(t is not None for t in traced._traces.values())
    assert {rows for rows, _ in traced._traces} == {1, 4}
    # The step itself: the same logits as the eager step at a later position of the cache.
    ids = prompt_ids(tokenizer)
    token = torch.tensor([[5], [7]])
    with torch.no_grad():
        keys, values = traced._caches(2, ids.shape[1] + 8)
        cos, sin = traced._rope(keys.shape[3])
        traced._step(ids, 0, keys, values, cos, sin)
        again = (keys.clone(), values.clone())
        want = traced._step(token, ids.shape[1], keys, values, cos, sin)
        got = traced._decode_step(token, ids.shape[1], *again, cos, sin)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again[0], keys)  # the new token's keys are in the cache


def test_a_step_the_tracer_cannot_follow_decodes_eagerly(tiny_lm, monkeypatch, caplog):
    model, tokenizer, _ = tiny_lm
    want = LlamaDecoder(model, traced=False).generate(prompt_ids(tokenizer), 6, min_new_tokens=6)

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    decoder = LlamaDecoder(model)
    assert decoder.generate(prompt_ids(tokenizer), 6, min_new_tokens=6) == want
    assert list(decoder._traces.values()) == [None] and "decoding eagerly" in caplog.text
