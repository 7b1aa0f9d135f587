"""PNG plots of one run: bytes and ms/step against N, resume latency against history,
throughput of many workers. One colour per system in every plot, clew's lines thick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

COLORS = {
    "clew Agent": "#d62728",
    "clew Store": "#ff7f0e",
    "LangGraph + ClewSaver": "#9467bd",
    "LangGraph + SqliteSaver": "#1f77b4",
    "LangGraph + PostgresSaver": "#1f77b4",
    "LangGraph + DeltaChannel + SqliteSaver": "#17becf",
    "LangGraph + DeltaChannel + PostgresSaver": "#17becf",
    "LangGraph + InMemorySaver": "#7f7f7f",
    "floor: bare INSERT": "#2ca02c",
}
BACKENDS = (("sqlite", "SQLite"), ("postgres", "PostgreSQL"))


def _style(system: str) -> dict[str, Any]:
    clew = system.startswith("clew") or "ClewSaver" in system
    return {
        "color": COLORS.get(system, "black"),
        "linewidth": 2.6 if clew else 1.6,
        "marker": "o",
        "markersize": 4,
        "linestyle": "--" if system.startswith("floor") else "-",
    }


def _bytes_fmt(v: float, _: Any) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if v >= size:
            return f"{v / size:g} {unit}"
    return f"{v:g} B"


def _series(rows: list[dict[str, Any]], backend: str, x: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["backend"] == backend or (r["backend"] == "memory" and backend == "sqlite"):
            out.setdefault(r["system"], []).append(r)
    return {k: sorted(v, key=lambda r: r[x]) for k, v in out.items()}


def _panels(title: str, n: int = 2) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, n, figsize=(7 * n, 6.4), squeeze=False)
    fig.suptitle(title, fontsize=13)
    return fig, axes[0]


def _log_axes(ax: Any, fmt: Any) -> None:
    """Log scales labelled in plain numbers: the decades, and 2 and 5 between them."""
    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: fmt(v, p) if f"{v:.0e}"[0] in "25" else ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.tick_params(axis="y", which="minor", labelsize=8)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.1)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bytes_vs_n(w1: list[dict[str, Any]], path: Path) -> None:
    fig, axes = _panels("W1: bytes stored against steps (log-log; lower is better)")
    for ax, (be, label) in zip(axes, BACKENDS, strict=True):
        series = _series(w1, be, "n")
        for name, rows in series.items():
            tag = f"{name} (in memory)" if rows[0]["backend"] == "memory" else name
            ax.plot([r["n"] for r in rows], [r["bytes"] for r in rows], label=tag, **_style(name))
        if series:
            raw = sorted({(r["n"], r["raw_bytes"]) for r in w1})
            ax.plot(*zip(*raw, strict=True), color="black", linestyle=":", linewidth=1.5, label="raw appended content")
        ax.set(xscale="log", yscale="log", title=label, xlabel="steps (N)", ylabel="bytes stored")
        _log_axes(ax, _bytes_fmt)
    _save(fig, path)


def ms_vs_n(w1: list[dict[str, Any]], path: Path) -> None:
    fig, axes = _panels("W1: ms per step against steps (median; log scale; lower is better)")
    for ax, (be, label) in zip(axes, BACKENDS, strict=True):
        for name, rows in _series(w1, be, "n").items():
            tag = f"{name} (in memory)" if rows[0]["backend"] == "memory" else name
            ax.plot([r["n"] for r in rows], [r["ms_median"] for r in rows], label=tag, **_style(name))
        ax.set(xscale="log", yscale="log", title=label, xlabel="steps (N)", ylabel="ms per step")
        _log_axes(ax, lambda v, _: f"{v:g}")
    _save(fig, path)


def resume_vs_history(w3: list[dict[str, Any]], path: Path) -> None:
    fig, axes = _panels("W3: latency against history length, state bounded (lower and flatter is better)")
    for ax, (key, label) in zip(
        axes, (("load_ms", "load latest state"), ("resume_ms", "resume a paused run")), strict=True
    ):
        for be, be_label in BACKENDS:
            for name, rows in _series([r for r in w3 if r["backend"] == be], be, "history").items():
                style = _style(name) | {"linestyle": "-" if be == "sqlite" else "--"}
                ax.plot([r["history"] for r in rows], [r[key] for r in rows], label=f"{name} [{be_label}]", **style)
        ax.set(xscale="log", yscale="log", title=label, xlabel="checkpoints in the run", ylabel="ms")
        _log_axes(ax, lambda v, _: f"{v:g}")
    _save(fig, path)


def throughput(w2: list[dict[str, Any]], path: Path) -> None:
    workers = sorted({r["workers"] for r in w2})
    systems = list(dict.fromkeys(r["system"] for r in w2))
    fig, axes = _panels("W2: steps per second, many workers on PostgreSQL (higher is better)", 1)
    ax, width = axes[0], 0.8 / max(1, len(systems))
    for i, name in enumerate(systems):
        vals = [next((r["steps_per_s"] for r in w2 if r["system"] == name and r["workers"] == w), 0) for w in workers]
        xs = [k + i * width for k in range(len(workers))]
        bars = ax.bar(xs, vals, width, label=name, color=COLORS.get(name, "black"))
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(
        [k + width * (len(systems) - 1) / 2 for k in range(len(workers))], [f"{w} processes" for w in workers]
    )
    ax.set(ylabel="steps per second")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    _save(fig, path)


def draw(res: dict[str, Any], out: Path) -> list[Path]:
    made = []
    for key, fn, name in (
        ("w1", bytes_vs_n, "bytes_vs_n.png"),
        ("w1", ms_vs_n, "ms_per_step_vs_n.png"),
        ("w3", resume_vs_history, "resume_vs_history.png"),
        ("w2", throughput, "w2_throughput.png"),
    ):
        if res.get(key):
            fn(res[key], out / name)
            made.append(out / name)
    return made
