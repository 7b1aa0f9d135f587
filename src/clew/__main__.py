"""``python -m clew``: the ``clew`` command."""

from clew.cli import run

run()
