"""W9 the inspector's runs list over a big store: 100,000 runs (``--quick``: 2,000).

Each page is a real HTTP request through the inspector's ASGI app (``GET
/api/v1/runs`` and the HTML page ``/``), timed end to end in-process: the first
page, a page deep in the list (reached by following cursors: keyset paging, so the
depth should not matter), a filter by agent, by label and by a rare status, and an
id-prefix search. Runs are made
with ``Store.create_run``, one transaction each, as an agent would.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import clew

AGENTS = ("support", "billing", "triage", "research")


def _fill(store: clew.Store, n: int, log: Any) -> float:
    start = time.perf_counter()
    for i in range(n):
        store.create_run(
            f"run-{i:07d}",
            agent=AGENTS[i % len(AGENTS)],
            labels={"team": f"t{i % 10}"},
            status="paused" if i % 1000 == 7 else "completed",
        )
        if i and i % 20_000 == 0:
            print(f"  W9 {i:,} runs made", file=log, flush=True)
    return time.perf_counter() - start


def _time(client: Any, url: str, reps: int) -> tuple[float, Any]:
    samples, body = [], None
    for _ in range(reps):
        t = time.perf_counter()
        r = client.get(url)
        samples.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
        body = r.json() if "json" in r.headers.get("content-type", "") else r.text
    return statistics.median(samples), body


def measure(where: dict[str, str], n: int, *, reps: int, depth: int, log: Any = sys.stderr) -> list[dict[str, Any]]:
    """``where`` maps a backend name to a store URL."""
    from starlette.testclient import TestClient

    from clew.web import create_app

    rows = []
    for backend, url in where.items():
        with clew.open(url) as store:
            fill_s = _fill(store, n, log)
            client = TestClient(create_app(store))
            client.get("/api/v1/info")  # start the client's event loop and the app before timing
            client.get("/?q=warm-up")  # and compile the page templates
            first, body = _time(client, "/api/v1/runs?limit=50", reps)
            html, _ = _time(client, "/?limit=50", reps)
            cursor, walk = body["next_cursor"], []
            for _ in range(depth - 1):  # follow cursors down the list, timing each page
                t = time.perf_counter()
                page = client.get(f"/api/v1/runs?limit=50&cursor={cursor}").json()
                walk.append((time.perf_counter() - t) * 1000)
                cursor = page["next_cursor"]
            deep, deep_body = _time(client, f"/api/v1/runs?limit=50&cursor={cursor}", reps)
            by_agent, _ = _time(client, "/api/v1/runs?limit=50&agent=triage", reps)
            by_label, _ = _time(client, "/api/v1/runs?limit=50&label=team%3Dt3", reps)
            by_status, sb = _time(client, "/api/v1/runs?limit=50&status=paused", reps)
            exact, _ = _time(client, f"/api/v1/runs?q=run-{n // 2:07d}", reps)
            prefix, pb = _time(client, f"/api/v1/runs?q=run-{n // 3:07d}"[:-2], reps)
            rows.append(
                {
                    "backend": backend,
                    "runs": n,
                    "fill_s": round(fill_s, 1),
                    "first_page_ms": first,
                    "html_page_ms": html,
                    "walk_page_ms_median": statistics.median(walk) if walk else None,
                    "depth_pages": depth,
                    "deep_page_ms": deep,
                    "deep_first_run": deep_body["items"][0]["run_id"],
                    "agent_ms": by_agent,
                    "label_ms": by_label,
                    "rare_status_ms": by_status,
                    "rare_status_found": len(sb["items"]),
                    "exact_id_ms": exact,
                    "prefix_ms": prefix,
                    "prefix_found": len(pb["items"]),
                }
            )
            print(f"  W9 {backend}: first page {first:.1f} ms, page {depth} {deep:.1f} ms", file=log, flush=True)
    return rows


def report(rows: list[dict[str, Any]]) -> list[str]:
    """W9 as Markdown lines."""
    if not rows:
        return []
    head = [
        "backend",
        "runs",
        "first page",
        "HTML page",
        f"page {rows[0]['depth_pages']}",
        "each page walking down",
        "agent",
        "label",
        "rare status",
        "exact id",
        "id prefix (runs found)",
    ]
    out = [f"## W9 inspector runs list over {rows[0]['runs']:,} runs (ms per request, median)", ""]
    out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [
            r["backend"],
            f"{r['runs']:,}",
            f"{r['first_page_ms']:.1f}",
            f"{r['html_page_ms']:.1f}",
            f"{r['deep_page_ms']:.1f}",
            f"{r['walk_page_ms_median']:.1f}" if r["walk_page_ms_median"] else "-",
            f"{r['agent_ms']:.1f}",
            f"{r['label_ms']:.1f}",
            f"{r['rare_status_ms']:.1f}",
            f"{r['exact_id_ms']:.1f}",
            f"{r['prefix_ms']:.1f} ({r['prefix_found']})",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]
