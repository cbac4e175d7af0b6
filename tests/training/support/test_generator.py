from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from training.support.decoding import supports
from training.support.generator import (
    PASSAGE_WORDS,
    Generator,
    GeneratorModule,
    add_lora,
    build_prompt,
    encode_example,
    generator_examples,
    load_base,
    pad_batch,
    resolve_generator,
    train_generator,
)
from training.support.losses import IGNORE_INDEX, reply_token_loss


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
    with_facts = build_prompt(
        tokenizer, [("user", "can I return it?")], ["P."], ["Lamp by Acme: $5.00, in stock"]
    )
    assert "Products in this conversation:\n- Lamp by Acme: $5.00, in stock" in with_facts
    assert with_facts.index("P.") < with_facts.index("Lamp by Acme") < with_facts.index("can I return it?")


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


def test_reply_tokens_cut_the_reply_and_its_eos(tiny_lm):
    _, tokenizer, _ = tiny_lm
    full = encode_example(tokenizer, "Shopper: hi\nAgent:", "Hello there, how can I help you today", 128)
    cut = encode_example(tokenizer, "Shopper: hi\nAgent:", "Hello there, how can I help you today", 128, 3)
    assert sum(t != IGNORE_INDEX for t in cut["labels"]) == 3
    assert cut["input_ids"] == full["input_ids"][: len(cut["input_ids"])]
    assert tokenizer.eos_token_id not in cut["input_ids"][-3:]


def test_left_padded_step_computes_the_reply_loss_of_the_full_logits(tiny_lm):
    """The training step keeps the output head to the reply positions: same loss as all of them."""
    model, tokenizer, _ = tiny_lm
    examples = [
        encode_example(tokenizer, "Shopper: where is my parcel, it is late\nAgent:", "It is on its way.", 64),
        encode_example(
            tokenizer, "Shopper: hi\nAgent:", "Hello! How can I help you with your order today?", 64
        ),
    ]
    right = pad_batch(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        expected = torch.stack(
            [
                reply_token_loss(
                    model(input_ids=torch.tensor([e["input_ids"]])).logits, torch.tensor([e["labels"]])
                )
                for e in examples
            ]
        )
        # Token-weighted mean over the batch, as cross-entropy over all reply tokens is.
        weights = torch.tensor([sum(t != IGNORE_INDEX for t in e["labels"][1:]) for e in examples]).float()
        expected = (expected * weights).sum() / weights.sum()
        full = reply_token_loss(
            model(**{k: right[k] for k in ("input_ids", "attention_mask")}).logits, right["labels"]
        )
        step = GeneratorModule(model, 1e-3).training_step(
            pad_batch(examples, tokenizer.pad_token_id, "left"), 0
        )
    assert float(full) == pytest.approx(float(expected), abs=1e-4)
    assert float(step) == pytest.approx(float(expected), abs=1e-4)


def test_lora_adapts_the_top_layers_only(tiny_lm, tiny_config):
    model, _, _ = tiny_lm
    adapted = add_lora(model, replace(tiny_config, lora_layers=1))
    layers = {int(n.split("layers.")[1].split(".")[0]) for n, _ in adapted.named_parameters() if "lora_" in n}
    assert layers == {model.config.num_hidden_layers - 1}


def test_quick_profile_fine_tunes_the_generator_with_lora(
    tiny_config, sample_corpus, tiny_sentence_encoder, tmp_path, monkeypatch
):
    """The quick profile's own settings (a few steps fewer): the LoRA step runs, on prompts
    with retrieved passages and, for some rows, product facts from the catalog."""
    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.config import SupportConfig
    from training.support.products import Product, ProductCatalog

    quick = SupportConfig.for_profile("quick")
    assert quick.generator_steps > 0 and quick.generator_reply_tokens and quick.lora_layers
    config = SupportConfig.for_profile(
        "quick",
        encoder=tiny_config.encoder,
        generator=tiny_config.generator,
        generator_steps=2,
        lora_layers=1,
    )
    catalog = ProductCatalog({"i1": Product("i1", "Desk Lamp", 12.5, "USD", True, "Acme")})
    monkeypatch.setattr(training_steps, "warehouse_catalog", lambda settings: catalog)
    facts = training_steps.prompt_facts(Settings(data_dir=tmp_path), 200, config)
    assert 0.1 < sum(bool(f) for f in facts) / 200 < 0.4
    assert ["Desk Lamp by Acme: $12.50, in stock"] in facts

    retriever = training_steps.support_retriever(sample_corpus, tiny_sentence_encoder)
    generator, adapter = training_steps.support_generator(
        sample_corpus, retriever, config, Settings(data_dir=tmp_path)
    )
    assert adapter is not None and generator.lora
    assert supports(generator.model)  # replies from a merged copy, through the fast decoder
    lora = {n: p for n, p in adapter.named_parameters() if "lora_B" in n}
    assert lora and any(p.abs().sum() > 0 for p in lora.values())  # B starts at zero: it trained
    assert isinstance(generator.candidates([("user", "cancel my order")], ["p"], 2), list)
