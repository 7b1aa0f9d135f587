"""Which systems run, in table order: per backend clew's, the stock savers', then the floor."""

from __future__ import annotations

from bench import _graphs
from bench._sys_clew import ClewAgent, ClewStore
from bench._sys_langgraph import LangGraphSystem
from bench._systems import Floor, System, Where

STOCK = {"sqlite": "SqliteSaver", "postgres": "PostgresSaver"}


def systems(where: Where) -> list[System]:
    """Every system that can run here: PostgreSQL ones if ``where.pg``, DeltaChannel if LangGraph has it."""
    out: list[System] = []
    for backend in ("sqlite", "postgres"):
        if backend == "postgres" and not where.pg:
            continue
        out += [
            ClewAgent(where, backend),
            ClewStore(where, backend),
            LangGraphSystem(where, "clew", backend=backend),
            LangGraphSystem(where, backend, backend=backend),
        ]
        if _graphs.has_delta_channel():
            out.append(LangGraphSystem(where, backend, backend=backend, delta=True))
        out.append(Floor(where, backend))
    out.append(LangGraphSystem(where, "memory", backend="memory"))
    return out


def is_stock_full_list(s: System) -> bool:
    """A stock saver storing the whole message list each step: quadratic, slow at large N."""
    return isinstance(s, LangGraphSystem) and s.kind in ("sqlite", "postgres", "memory") and not s.delta


def by_key(where: Where, key: str) -> System:
    for s in systems(where):
        if s.key == key:
            return s
    raise KeyError(key)
