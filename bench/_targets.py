"""The issue's targets, checked against one run's results: each measured, met or missed.

Nothing here fails the run: a missed target is a finding to report, with the number.
A target whose systems did not run (no PostgreSQL, ``--quick``'s small N) is skipped.
"""

from __future__ import annotations

from typing import Any

AGENT, SAVER, STORE = "clew Agent", "LangGraph + ClewSaver", "clew Store"
STOCK = {"sqlite": "LangGraph + SqliteSaver", "postgres": "LangGraph + PostgresSaver"}
DELTA = {"sqlite": "LangGraph + DeltaChannel + SqliteSaver", "postgres": "LangGraph + DeltaChannel + PostgresSaver"}
FLOOR = "floor: bare INSERT"


def find(rows: list[dict[str, Any]], system: str, backend: str, **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if r["system"] == system and r["backend"] == backend and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    return a[key] / b[key] if a and b and b[key] else None


def evaluate(res: dict[str, Any], n: int = 400) -> list[dict[str, Any]]:
    w1, w2, w3, w4 = res.get("w1", []), res.get("w2", []), res.get("w3", []), res.get("w4", [])
    out: list[dict[str, Any]] = []

    def check(target: str, who: str, value: float | None, goal: float, at_most: bool, unit: str = "x") -> None:
        if value is None:
            return
        met = value <= goal if at_most else value >= goal
        by = value / goal if at_most else goal / value
        out.append(
            {
                "target": target,
                "system": who,
                "measured": f"{value:.2f}{unit}",
                "goal": f"{'<=' if at_most else '>='} {goal:g}{unit}",
                "met": met,
                "verdict": "met" if met else f"missed ({by:.1f}x off)",
            }
        )

    backends = ("sqlite", "postgres")
    for be in backends:
        for who in (AGENT, STORE, SAVER):
            r = find(w1, who, be, n=n)
            x_raw = r["bytes"] / r["raw_bytes"] if r else None
            check(f"bytes <= 1.5x raw appended (N={n})", f"{who} [{be}]", x_raw, 1.5, True)
    for be in backends:
        for who in (AGENT, SAVER):
            a, b, c = (find(w1, who, be, n=k) for k in (100, 400, 1000))
            if a and b and c:
                slope = ((c["bytes"] - b["bytes"]) / (c["n"] - b["n"])) / (
                    (b["bytes"] - a["bytes"]) / (b["n"] - a["n"])
                )
                check("bytes linear in N: bytes/step for N 400-1000 over N 100-400", f"{who} [{be}]", slope, 1.25, True)
    for be in backends:
        for who in (AGENT, SAVER):
            c = find(w1, who, be, n=n)
            stock, delta = find(w1, STOCK[be], be, n=n), find(w1, DELTA[be], be, n=n)
            check(
                f"bytes >= 100x fewer than {STOCK[be]} (N={n})", f"{who} [{be}]", _ratio(stock, c, "bytes"), 100, False
            )
            check(f"bytes >= 3x fewer than {DELTA[be]} (N={n})", f"{who} [{be}]", _ratio(delta, c, "bytes"), 3, False)
    stock = find(w1, STOCK["sqlite"], "sqlite", n=n)
    for who in (AGENT, SAVER):
        faster = _ratio(stock, find(w1, who, "sqlite", n=n), "ms_median")
        check(f"ms/step on SQLite >= 10x faster than {STOCK['sqlite']} (N={n})", f"{who} [sqlite]", faster, 10, False)
    floor = find(w1, FLOOR, "sqlite", n=n)
    for who in (AGENT, STORE):
        slower = _ratio(find(w1, who, "sqlite", n=n), floor, "ms_median")
        check(f"ms/step on SQLite within 3x of the bare-INSERT floor (N={n})", f"{who} [sqlite]", slower, 3, True)
    hs = sorted({r["history"] for r in w3})
    for be in backends if len(hs) > 1 else ():
        for who in (AGENT, SAVER):
            grows = _ratio(find(w3, who, be, history=hs[-1]), find(w3, who, be, history=hs[0]), "load_ms")
            check(f"load latest flat: {hs[-1]:,} vs {hs[0]:,} checkpoints", f"{who} [{be}]", grows, 2, True)
    for be in backends:
        for who in (AGENT, SAVER):
            r = find(w4, who, be, n=n)
            check(f"listing {n} checkpoints <= 5 ms", f"{who} [{be}]", r["list_ms"] if r else None, 5, True, " ms")
    for workers in sorted({r["workers"] for r in w2}):
        peer = find(w2, STOCK["postgres"], "postgres", workers=workers)
        for who in (AGENT, SAVER):
            x = _ratio(find(w2, who, "postgres", workers=workers), peer, "steps_per_s")
            check(
                f"PostgreSQL W2 throughput >= 4.5x {STOCK['postgres']} ({workers} workers)",
                f"{who} [postgres]",
                x,
                4.5,
                False,
            )
    return out
