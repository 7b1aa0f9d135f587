"""The ``clew`` command: a thin layer over the public Python API.

Every list/show command has ``--json``. Errors become a one-line message and an exit
code here, in one place (``--debug`` shows the traceback).
"""

from clew.cli._app import app, main

__all__ = ["app", "main", "run"]


def run() -> None:
    """Console-script entry point."""
    import sys

    sys.exit(main())
