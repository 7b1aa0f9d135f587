"""The app: global options, the commands in order, and errors mapped to exit codes in one place."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

import clew
from clew import errors
from clew.cli import _act, _inspect, _privacy, _ui
from clew.cli._common import err, text

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Inspect and operate durable agent runs.",
)

# Modules whose classes stored states often hold; imported when installed, so that
# their values decode (clew never imports a module because a blob names it).
KNOWN_MODULES = ("clew.integrations.langchain_types",)

# In the order of `clew --help`: looking first, then acting, then the inspector.
COMMANDS: list[Callable[..., None]] = [
    _inspect.runs,
    _inspect.history,
    _inspect.show,
    _inspect.branches,
    _inspect.compare,
    _inspect.verify,
    _inspect.export,
    _act.resume,
    _act.fork,
    _act.edit,
    _act.cancel,
    _act.delete,
    _act.recover,
    _act.worker,
    _act.demo,
    _privacy.erase,
    _privacy.gc,
    _ui.ui,
]
for _command in COMMANDS:
    app.command()(_command)
app.command("check-compat")(_privacy.check_compat)
app.command()(_privacy.migrate)
app.add_typer(_privacy.keys_app, name="keys")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clew {clew.__version__}")
        raise typer.Exit()


@app.callback()
def _setup(
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            envvar="CLEW_IMPORT",
            help="Import this module first, so the classes stored states hold can be decoded. Repeatable.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    for name in KNOWN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if "" not in sys.path:
        sys.path.insert(0, "")  # modules of the working directory, as python -m does
    for name in imports or ():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise errors.ConfigError(f"--import {name}: {exc}") from exc


EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.NotFoundError, 3),
    (errors.ConflictError, 4),
    (errors.LeaseError, 4),
    (errors.IntegrityError, 5),
    (errors.StoreUnavailableError, 6),
    (errors.ConfigError, 2),
    (errors.ClewError, 1),
]


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, mapping clew errors to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CLEW_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        rc = app(args, standalone_mode=False, prog_name="clew")
    except errors.ClewError as exc:
        if debug:
            raise
        code = next(c for t, c in EXIT_CODES if isinstance(exc, t))
        err.print(text(("error:", "red"), " ", str(exc)), soft_wrap=True)
        return code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 1
    except Exception as exc:
        # Usage errors (a ClickException, whichever click Typer ships) show themselves.
        show, status = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(status, int):
            show()
            return status
        if type(exc).__name__ == "Abort":
            err.print("aborted")
            return 1
        raise
    return rc if isinstance(rc, int) else 0
