"""Deterministic, text-like test content: what agent messages and tool results look like.

Neither all-zero nor random bytes: words from a small vocabulary with numbers, ids and
punctuation mixed in, so compression behaves as it would on a real conversation.
"""

from __future__ import annotations

import random

WORDS = (  # noqa: SIM905 - a sentence is easier to read than a list of 60 strings
    "the a an to of and in for on with is was are be it this that customer order refund invoice billing "
    "account payment shipping delivery tracking status policy return window days product warranty support "
    "ticket priority escalation agent tool search knowledge base article result summary answer question "
    "user assistant please thanks sorry checked found could not would should error retry timeout"
).split()


def text(rnd: random.Random, size: int) -> str:
    """About ``size`` characters of sentence-like text."""
    words: list[str] = []
    length = 0
    while length < size:
        roll = rnd.random()
        if roll < 0.06:
            word = f"#{rnd.randint(10_000, 99_999_999)}"
        elif roll < 0.1:
            word = rnd.choice(WORDS).capitalize() + rnd.choice(".,;:?!")
        else:
            word = rnd.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def message(rnd: random.Random, role: str, size: int = 400) -> dict[str, object]:
    return {"role": role, "content": text(rnd, size)}


def tool_result(rnd: random.Random, step: int, size: int = 1000) -> dict[str, object]:
    return {
        "tool": rnd.choice(["kb_search", "billing_lookup", "order_status"]),
        "call_id": f"call_{step}",
        "ok": rnd.random() > 0.1,
        "output": text(rnd, size),
    }
