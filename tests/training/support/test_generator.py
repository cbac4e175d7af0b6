from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from training.support.generator import (
    PASSAGE_WORDS,
    Generator,
    build_prompt,
    encode_example,
    generator_examples,
    load_base,
    pad_batch,
    resolve_generator,
    train_generator,
)
from training.support.losses import IGNORE_INDEX


@pytest.fixture
def tiny_lm(tiny_lm_dir, tmp_path):
    return load_base(str(tiny_lm_dir), tmp_path)


def test_prompt_holds_passages_and_dialogue(tiny_lm):
    _, tokenizer, _ = tiny_lm
    prompt = build_prompt(
        tokenizer,
        [("user", "cancel order 1"), ("assistant", "Which one?"), ("user", "the shoes")],
        ["Passage about cancelling."],
    )
    assert "Passage about cancelling." in prompt
    assert prompt.index("cancel order 1") < prompt.index("Which one?") < prompt.index("the shoes")
    assert prompt.endswith("Agent:")


def test_prompt_clips_long_passages(tiny_lm):
    _, tokenizer, _ = tiny_lm
    prompt = build_prompt(tokenizer, [("user", "hi")], ["word " * 500])
    assert prompt.count("word") == PASSAGE_WORDS


def test_encode_example_masks_the_prompt(tiny_lm):
    _, tokenizer, _ = tiny_lm
    example = encode_example(tokenizer, "Shopper: hi\nAgent:", "Hello there", 64)
    prompt_len = len(tokenizer("Shopper: hi\nAgent:", add_special_tokens=False)["input_ids"])
    assert example["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert example["labels"][prompt_len:] == example["input_ids"][prompt_len:]
    assert example["input_ids"][-1] == tokenizer.eos_token_id
    long = encode_example(tokenizer, "passage " * 200, "the reply", 32)
    assert len(long["input_ids"]) <= 32
    assert tokenizer.decode([t for t in long["labels"] if t != IGNORE_INDEX]).strip().startswith("the reply")


def test_pad_batch():
    batch = pad_batch(
        [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}], 0
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"][1].tolist() == [4, -100, -100]


def test_lora_trains_only_the_adapter(tiny_lm, sample_corpus, tiny_config):
    model, tokenizer, info = tiny_lm
    train = sample_corpus.train().head(8)
    examples = generator_examples(tokenizer, train, [["a passage"]] * train.height, 96)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = train_generator(
        model, tokenizer, examples, replace(tiny_config, generator_steps=4, generator_lr=1e-2)
    )
    changed = {n for n, p in adapted.named_parameters() if "lora_" in n}
    assert changed, "no LoRA parameters"
    base = adapted.get_base_model()
    for name, param in base.named_parameters():
        if "lora_" not in name and "base_layer" not in name and name in frozen:
            assert torch.equal(param, frozen[name]), name
    text = Generator(adapted, tokenizer, info, 5).generate([("user", "cancel my order")], ["p"])
    assert isinstance(text, str)
    with pytest.raises(ValueError):
        train_generator(model, tokenizer, [], tiny_config)


def test_unknown_generator_is_a_clear_error(tmp_path):
    assert resolve_generator(str(tmp_path), tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="offline"):
        load_base("no-such-org/no-such-model", tmp_path)


@pytest.mark.slow
def test_default_gguf_generator_converts_once_and_reloads_fast(tmp_path):
    import time

    model, tokenizer, info = load_base("smollm2-gguf", tmp_path)
    assert model.config.num_hidden_layers == 30 and tokenizer.chat_template
    assert (tmp_path / "SmolLM2-135M-Instruct.Q4_1" / "model.safetensors").exists()
    start = time.perf_counter()
    again, _, info2 = load_base("smollm2-gguf", tmp_path)
    assert time.perf_counter() - start < 5  # well under a second on an idle machine
    assert info2 == info
    ids = tokenizer("Hello", return_tensors="pt")
    assert torch.allclose(model(**ids).logits, again(**ids).logits)
