"""Turn router benchmark: train it, set its threshold on the dev half, measure the test half.

    python benchmarks/router.py [--steps 300] [--per-label 600] [--lr 1e-4] [--threads 2]

Trains the MiniLM router (training/support/router.py; embeddings and the two lower layers
frozen, label-smoothed cross-entropy, linear warm-up and decay) on ``router_examples``:
Bitext questions, ABCD-flow support questions, the details a shopper gives once asked,
composed catalog requests and refinements ("cheaper", "not Acme", "deluxe"), questions about
a shown product, small talk and out-of-scope questions. Reads each dev-set turn with the
shopper's previous turn, as the runtime does; chooses the clarifying-question threshold on
the dev half; prints one JSON line with the dev half's figures (every choice of data and
settings is made on them) and the test half's macro accuracy over the five router goals (a
clarifying question counts as wrong), per goal, and the two-stage figure over all six goals
(language detection first, then the router). Target (DESIGN.md): test macro accuracy >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def turns_with_previous(dialogues):
    rows = []
    for dialogue in dialogues:
        previous = ""
        for turn in dialogue:
            rows.append((turn, previous))
            previous = turn.text
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--per-label", type=int, default=600)
    parser.add_argument("--lr", type=float, help="learning rate (default: RouterConfig's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from data_contracts import synthetic
    from training.support.corpus import bitext_path
    from training.support.dev_set import load_dev_set
    from training.support.language import LanguageDetector
    from training.support.router import (
        LABELS,
        Router,
        RouterConfig,
        choose_threshold,
        macro_accuracy,
        router_examples,
        train_router,
    )

    torch.set_num_threads(args.threads)
    vocabulary = {
        "categories": list(synthetic.TOP_CATEGORIES),
        "subcategories": list(synthetic.SUB_CATEGORIES),
        "brands": list(synthetic.BRANDS),
        "adjectives": list(synthetic.ADJECTIVES),
        "nouns": [n for ns in synthetic.NOUNS.values() for n in ns],
    }
    config = RouterConfig(steps=args.steps)
    if args.lr is not None:
        config.lr = args.lr
    examples = router_examples(bitext_path(), vocabulary, args.per_label, config.seed)
    started = time.perf_counter()
    router = train_router(Router.from_encoder(config.encoder, config.max_length), examples, config)
    train_s = time.perf_counter() - started

    def routed(split):
        rows = [(t, p) for t, p in turns_with_previous(load_dev_set(split)) if t.goal != "other_language"]
        probs = router.probabilities([t.text for t, _ in rows], [p for _, p in rows])
        return rows, probs

    dev_rows, dev_probs = routed("dev")
    dev_gold = [t.goal for t, _ in dev_rows]
    threshold = choose_threshold(dev_gold, dev_probs)
    dev_macro, dev_per_goal = macro_accuracy(
        dev_gold,
        [
            LABELS[b] if p[b] >= threshold else None
            for b, p in zip(dev_probs.argmax(1), dev_probs, strict=True)
        ],
    )
    test_rows, test_probs = routed("test")
    gold = [t.goal for t, _ in test_rows]
    best = [LABELS[b] for b in test_probs.argmax(1)]
    with_threshold = [
        LABELS[b] if p[b] >= threshold else None
        for b, p in zip(test_probs.argmax(1), test_probs, strict=True)
    ]
    macro, per_goal = macro_accuracy(gold, with_threshold)
    macro_no_threshold, _ = macro_accuracy(gold, best)
    # Two stages over all six goals: a language the shop does not serve first, then the router.
    detector = LanguageDetector().warm()
    all_rows = turns_with_previous(load_dev_set("test"))
    lookup = {(t.dialogue_id, t.turn): g for (t, _), g in zip(test_rows, with_threshold, strict=True)}
    two_stage_gold, two_stage = [], []
    for turn, previous in all_rows:
        two_stage_gold.append(turn.goal)
        if not detector.detect(turn.text).served:
            two_stage.append("other_language")
        else:
            # A foreign turn the detector let through is routed like any other (and is wrong).
            key = (turn.dialogue_id, turn.turn)
            two_stage.append(lookup[key] if key in lookup else router.predict([turn.text], [previous])[0][0])
    two_stage_macro, two_stage_per_goal = macro_accuracy(two_stage_gold, two_stage)
    print(
        json.dumps(
            {
                "bench": "router",
                "examples": len(examples),
                "steps": config.steps,
                "train_s": round(train_s, 1),
                "threshold": threshold,
                "dev_router_accuracy": round(dev_macro, 4),
                "dev_router_accuracy_by_goal": {k: round(v, 4) for k, v in dev_per_goal.items()},
                "test_turns": len(test_rows),
                "router_accuracy": round(macro, 4),
                "router_accuracy_no_threshold": round(macro_no_threshold, 4),
                "router_accuracy_by_goal": {k: round(v, 4) for k, v in per_goal.items()},
                "clarify_rate": round(sum(p is None for p in with_threshold) / len(with_threshold), 4),
                "two_stage_accuracy": round(two_stage_macro, 4),
                "two_stage_by_goal": {k: round(v, 4) for k, v in two_stage_per_goal.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
