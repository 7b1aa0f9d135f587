"""One run's results as Markdown: the headline table at N = 400, the targets, then each workload.

Ratios for a clew row: "x fewer bytes" and "x faster" are the peer's number over
clew's (above 1 is better for clew); "x floor" is clew's number over the floor's (1
would be the floor itself). The peer is the stock LangGraph saver on the same
backend, the floor a bare INSERT of the same delta bytes.
"""

from __future__ import annotations

from typing import Any

from bench import _machine, w9_inspector
from bench._targets import DELTA, FLOOR, find


def _x(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{v:,.{digits}f}x"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.3f}" if v < 1 else f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def headline(res: dict[str, Any], n: int) -> list[str]:
    w1, mem = res.get("w1", []), res.get("memory", [])
    head = [
        "system",
        "backend",
        "bytes",
        "x raw",
        "ms/step median",
        "p95",
        "steps/s",
        "peak RSS MB",
        "x fewer bytes than peer",
        "x fewer than DeltaChannel",
        "x faster than peer",
        "bytes x floor",
        "ms x floor",
    ]
    rows = []
    for r in (r for r in w1 if r["n"] == n):
        m = find(mem, r["system"], r["backend"])
        peer = find(w1, r["peer"], r["backend"], n=n) if r["family"] == "clew" else None
        delta = find(w1, DELTA.get(r["backend"], ""), r["backend"], n=n) if r["family"] == "clew" else None
        floor = find(w1, FLOOR, r["backend"], n=n) if r["family"] == "clew" else None
        name = f"**{r['system']}**" if r["family"] == "clew" else r["system"]
        rows.append(
            [
                name,
                r["backend"],
                f"{r['bytes']:,}",
                _x(r["bytes"] / r["raw_bytes"], 2),
                _ms(r["ms_median"]),
                _ms(r["ms_p95"]),
                f"{r['steps_per_s']:,.0f}",
                f"{m['peak_rss_mb']:.0f}" if m else "-",
                _x(peer["bytes"] / r["bytes"]) if peer else "",
                _x(delta["bytes"] / r["bytes"]) if delta else "",
                _x(peer["ms_median"] / r["ms_median"]) if peer else "",
                _x(r["bytes"] / floor["bytes"], 2) if floor else "",
                _x(r["ms_median"] / floor["ms_median"]) if floor else "",
            ]
        )
    return _table(head, rows)


def _by_n(w1: list[dict[str, Any]], key: str, fmt: Any) -> list[str]:
    ns = sorted({r["n"] for r in w1})
    systems: list[tuple[str, str]] = []
    for r in w1:
        if (r["system"], r["backend"]) not in systems:
            systems.append((r["system"], r["backend"]))
    rows = []
    for name, be in systems:
        cells = [find(w1, name, be, n=n) for n in ns]
        rows.append([name, be] + [fmt(c[key]) if c else "-" for c in cells])
    raw = [next((r for r in w1 if r["n"] == n), None) for n in ns]
    if key == "bytes":
        rows.append(["raw appended (the content)", ""] + [f"{r['raw_bytes']:,}" if r else "-" for r in raw])
    return _table(["system", "backend"] + [f"N={n}" for n in ns], rows)


def render(res: dict[str, Any], *, n: int = 400) -> str:
    cfg, out = res["config"], []
    out += ["# clew benchmark results", ""]
    out += [f"Command: `{cfg['command']}`; finished {res['finished']}; wall time {res['elapsed_s']:.0f} s.", ""]
    out += [f"Machine: {_machine.one_line(res['machine'])}.", ""]
    load = res["machine"].get("load_average_at_start")
    if load is not None:
        out += [f"Load average (1 min) at start: {load:.2f}, at end: {res.get('load_average_at_end', 0):.2f}.", ""]
    if res.get("skipped"):
        out += ["Skipped: " + "; ".join(res["skipped"]) + ".", ""]
    if res.get("w1"):
        out += [f"## W1 agent run at N = {n}: clew against each peer and the floor", ""]
        out += [*headline(res, n), ""]
    if res.get("targets"):
        out += ["## Targets", ""]
        if cfg.get("quick"):
            out += ["(A `--quick` run: its sizes are too small for these verdicts to mean anything.)", ""]
        out += _table(
            ["target", "system", "measured", "goal", "verdict"],
            [[t["target"], t["system"], t["measured"], t["goal"], t["verdict"]] for t in res["targets"]],
        )
        out += [""]
    if res.get("w1"):
        out += ["## W1 bytes stored against N", "", *_by_n(res["w1"], "bytes", lambda v: f"{v:,}"), ""]
        out += ["## W1 ms per step (median) against N", "", *_by_n(res["w1"], "ms_median", _ms), ""]
        out += ["## W1 ms per step (p95) against N", "", *_by_n(res["w1"], "ms_p95", _ms), ""]
    out += w9_inspector.report(res.get("w9", []))
    if res.get("w2"):
        w2 = res["w2"]
        out += [f"## W2 many workers on PostgreSQL ({w2[0]['runs']} runs x {w2[0]['steps_per_run']} steps each)", ""]
        rows = []
        for r in w2:
            peer = find(w2, "LangGraph + PostgresSaver", "postgres", workers=r["workers"])
            floor = find(w2, FLOOR, "postgres", workers=r["workers"])
            rows.append(
                [
                    r["system"],
                    str(r["workers"]),
                    f"{r['steps']:,}",
                    f"{r['seconds']:.2f}",
                    f"{r['steps_per_s']:,.0f}",
                    _x(r["steps_per_s"] / peer["steps_per_s"], 2) if peer else "",
                    _x(r["steps_per_s"] / floor["steps_per_s"], 2) if floor else "",
                ]
            )
        out += _table(["system", "workers", "steps", "seconds", "steps/s", "x PostgresSaver", "x floor"], rows)
        out += [""]
    if res.get("w6"):
        w6 = res["w6"]
        direct = next((r for r in w6 if r["front"] == "direct"), None)
        out += [
            f"## W6 through pgbouncer against direct ({w6[0]['workers']} workers, "
            f"{w6[0]['runs']} runs x {w6[0]['steps_per_run']} steps each)",
            "",
        ]
        rows = [
            [
                r["system"],
                f"{r['steps']:,}",
                f"{r['seconds']:.2f}",
                f"{r['steps_per_s']:,.0f}",
                _x(r["steps_per_s"] / direct["steps_per_s"], 2) if direct else "",
            ]
            for r in w6
        ]
        out += _table(["system", "steps", "seconds", "steps/s", "x direct"], rows)
        out += [""]
    if res.get("w3"):
        out += ["## W3 resume latency against history length (state bounded to the last 20 messages)", ""]
        rows = [
            [
                r["system"],
                r["backend"],
                f"{r['history']:,}",
                _ms(r["load_ms"]),
                _ms(r["resume_ms"]),
                _ms(r["build_ms_per_step"]),
            ]
            for r in sorted(res["w3"], key=lambda r: (r["backend"], r["system"], r["history"]))
        ]
        out += _table(["system", "backend", "checkpoints", "load latest ms", "resume ms", "build ms/step"], rows)
        out += [""]
    if res.get("w8"):
        w8 = res["w8"]
        out += [f"## W8 encryption at rest: the W1 run at N = {w8[0]['n']}, plain and encrypted", ""]
        rows = []
        for r in w8:
            if r["backend"] == "codec only":
                continue
            plain = next(p for p in w8 if p["backend"] == r["backend"] and p["codec"] == "plain")
            rows.append(
                [
                    r["backend"],
                    r["codec"],
                    _ms(r["ms_median"]),
                    _ms(r["ms_p95"]),
                    _ms(r["load_ms"]),
                    f"{r['bytes']:,}",
                    _x(r["ms_median"] / plain["ms_median"], 2),
                    _x(r["load_ms"] / plain["load_ms"], 2),
                ]
            )
        out += _table(
            [
                "backend",
                "codec",
                "ms/step p50",
                "ms/step p95",
                "load latest ms",
                "blob bytes",
                "step vs plain",
                "load vs plain",
            ],
            rows,
        )
        out += [""]
        rot = res.get("w8_rotation") or []
        if rot:
            first = rot[0]
            out += [
                f"Key rotation onto a new key: {first['runs']} runs of {first['steps']} steps "
                f"({first['blobs_stored']:,} blobs)",
                "",
            ]
            rows = []
            for r in rot:
                base = next(p for p in rot if p["backend"] == r["backend"] and p["how"] == "re-encrypt rows")
                rows.append(
                    [
                        r["backend"],
                        r["how"],
                        f"{r['rows_rewritten']:,}",
                        f"{r['bytes_rewritten']:,}",
                        f"{r['seconds']:.3f}",
                        f"{r['runs_per_s']:,.0f}",
                        f"{r['rows_per_s']:,.0f}",
                        _x(base["seconds"] / r["seconds"], 1),
                    ]
                )
            out += _table(
                ["backend", "rotation", "rows rewritten", "bytes rewritten", "seconds", "runs/s", "rows/s", "speed-up"],
                rows,
            )
            out += [""]
        alone = [r for r in w8 if r["backend"] == "codec only"]
        if alone:
            out += ["The codec alone (best of several passes; no database): one step's three values", ""]
            out += _table(
                ["codec", "wrap µs/step", "unwrap µs/step"],
                [[r["codec"], f"{r['wrap_us_per_step']:.1f}", f"{r['unwrap_us_per_step']:.1f}"] for r in alone],
            )
            out += [""]
    if res.get("w4"):
        w4 = res["w4"]
        out += [f"## W4 listing and W5 fork at N = {w4[0]['n']}, and load latest", ""]
        rows = [
            [
                r["system"],
                r["backend"],
                _ms(r["load_ms"]),
                _ms(r["list_ms"]),
                str(r["listed"]),
                _ms(r["fork_ms"]),
                f"{r['fork_bytes']:,.0f}" if r["fork_bytes"] is not None else "-",
            ]
            for r in w4
        ]
        out += _table(["system", "backend", "load latest ms", "list ms", "listed", "fork ms", "fork bytes added"], rows)
        out += [""]
    if res.get("w7"):
        out += [*w7_tables(res["w7"]), ""]
    if res.get("w10"):
        out += [*w10_tables(res["w10"]), ""]
    if res.get("memory"):
        out += [f"## Peak memory of a W1 run at N = {res['memory'][0]['n']} (a process per system)", ""]
        rows = [
            [r["system"], r["backend"], f"{r['peak_rss_mb']:.0f}", f"{r['rss_growth_mb']:.1f}"] for r in res["memory"]
        ]
        out += [*_table(["system", "backend", "peak RSS MB", "RSS growth during the run MB"], rows), ""]
    return "\n".join(out)


def w7_tables(w7: dict[str, list[dict[str, Any]]]) -> list[str]:
    """W7: clew's state shapes, statements per step, and loads against N."""
    shapes = w7["shapes"]
    out = [f"## W7 state shapes at N = {shapes[0]['n']} (clew alone)", ""]
    rows = [
        [
            r["shape"],
            r["backend"],
            f"{r['bytes']:,}",
            _x(r["x_raw"], 2),
            _ms(r["ms_per_step"]),
            f"{r['statements_per_step']:.1f}",
            f"{r['round_trips_per_step']:.1f}",
            f"{r['transactions_per_step']:.1f}",
            _ms(r["cold_load_ms"]),
            _ms(r["warm_load_ms"]),
        ]
        for r in shapes
    ]
    head = ["shape", "backend", "bytes", "x raw", "ms/step", "statements/step", "round trips/step"]
    out += _table([*head, "transactions/step", "load cold ms", "load warm ms"], rows)
    out += ["", "## W7 load of the latest state against N (lists shape: the state grows with N)", ""]
    rows = [
        [r["backend"], f"{r['n']:,}", f"{r['bytes']:,}", _ms(r["cold_load_ms"]), _ms(r["warm_load_ms"])]
        for r in w7["loads"]
    ]
    out += _table(["backend", "N", "bytes", "load cold ms", "load warm ms"], rows)
    return out


def w10_tables(rows: list[dict[str, Any]]) -> list[str]:
    """W10: LangGraph with a dict channel, ClewSaver against the stock savers and DeltaChannel."""
    from bench.langgraph_bench import dict_targets

    out = ['## W10 LangGraph with a dict channel (`durability="sync"`, fresh databases)', ""]
    out += [
        "Each step adds two ~400 B messages and a ~1 KB tool result under a new key of "
        "`tool_results: Annotated[dict, merge]`; `get_state` and `get_state_history` on a reopened saver "
        "(fastest of several reads). The systems run interleaved, each on a fresh database every time; "
        "ms/step and the reads are the fastest of the repetitions (3 in a full run), bytes the first's.",
        "",
    ]
    table = [
        [
            r["backend"],
            f"{r['n']:,}",
            r["system"],
            f"{r['bytes']:,}",
            _ms(r["ms_per_step"]),
            _ms(r["get_state_ms"]),
            _ms(r["history_ms"]),
        ]
        for r in rows
    ]
    out += _table(["backend", "N", "system", "bytes", "ms/step", "get_state ms", "get_state_history ms"], table)
    out += ["", "| target | met | measured |", "|---|---|---|"]
    out += [f"| {what} | {'yes' if met else 'no'} | {figure} |" for what, met, figure in dict_targets(rows)]
    return out
