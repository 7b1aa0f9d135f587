"""``clew ui``: serve the inspector with uvicorn; localhost by default, a token anywhere else."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clew._extras import require
from clew.errors import ConfigError
from clew.runtime import Agent
from clew.store import Store
from clew.web._app import create_app
from clew.web._security import LOCAL_HOSTS, new_token


def load_agent(spec: str, store: Store) -> Agent[Any]:
    """The agent at ``module:attr`` or ``path/to/file.py:attr``.

    ``attr`` is an :class:`~clew.Agent`, or a function that makes one: called with
    ``store`` if it takes an argument (the demo's ``make_agent(store)``), else with none.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"--agent {spec!r}: write it as module:attr or path/to/file.py:attr")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            if loaded is None or loaded.loader is None or not path.exists():
                raise ConfigError(f"--agent {spec!r}: no such file {str(path)!r}")
            module = importlib.util.module_from_spec(loaded)
            sys.modules[path.stem] = module
            loaded.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # as python -m does: modules of the working directory
            module = importlib.import_module(target)
    except ImportError as exc:
        raise ConfigError(f"--agent {spec!r}: cannot import {target!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"--agent {spec!r}: {target!r} has no {attr!r}")
    if not isinstance(obj, Agent) and callable(obj):
        obj = obj(store) if inspect.signature(obj).parameters else obj()
    if not isinstance(obj, Agent):
        raise ConfigError(f"--agent {spec!r} is a {type(obj).__name__}, not a clew.Agent nor a function making one")
    return obj


def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = False,
    agent: Agent[Any] | Callable[[Store], Agent[Any]] | None = None,
    open_path: str = "/",
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the inspector until interrupted. Beyond localhost a token is required (one is made if not given)."""
    uvicorn = require("uvicorn", "ui", "clew ui")
    if token is None and host not in LOCAL_HOSTS:
        token = new_token()
        echo(f"clew ui binds {host}, beyond this machine: every request needs this token")
    app = create_app(store, read_only=read_only, token=token, agent=agent)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - we only print it
    url = f"http://{shown}:{port}{open_path}"
    if token:
        url += ("&" if "?" in open_path else "?") + f"token={token}"
    echo(f"clew inspector: {url}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
