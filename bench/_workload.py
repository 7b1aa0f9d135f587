"""The agent workload shared by the benchmarks: each step appends two ~400-byte
messages and one ~1 KB tool result, text-like (words from a vocabulary), seeded.

Every system in the suite stores these same texts; ``delta`` is the step's content
in clew's canonical encoding, which the floor inserts and ``raw_bytes`` adds up.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from clew.codec import Codec

_WORDS = None

Step = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _vocabulary() -> list[str]:
    global _WORDS
    if _WORDS is None:
        rng = random.Random(7)
        letters = "abcdefghijklmnopqrstuvwxyz"
        _WORDS = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    return _WORDS


def text(rng: random.Random, n: int) -> str:
    words = _vocabulary()
    out: list[str] = []
    size = 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def steps(n: int, seed: int = 1) -> Iterator[Step]:
    """``n`` steps of (user message, assistant message, tool result)."""
    rng = random.Random(seed)
    for i in range(n):
        yield (
            {"role": "user", "content": text(rng, 400), "id": f"u{i}"},
            {"role": "assistant", "content": text(rng, 400), "id": f"a{i}"},
            {"tool": "kb_search", "call_id": f"c{i}", "output": text(rng, 1000)},
        )


def raw_bytes(items: list[Any]) -> int:
    """The appended content's size: its canonical encoding, item by item."""
    codec = Codec()
    return sum(len(codec.dumps(x)[0]) for x in items)


_CODEC = Codec()


def delta(step: Step) -> bytes:
    """One step's appended content as bytes: what the floor inserts."""
    return _CODEC.dumps(list(step))[0]


def raw_appended(n: int) -> int:
    """The bytes ``n`` steps append (their items' canonical encodings, added up)."""
    return raw_bytes([item for s in steps(n) for item in s])


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.95))] * 1000


def timed(fn: Callable[[], Any], repeat: int = 7) -> float:
    """Median seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)
