"""``python -m clew.cli``."""

from clew.cli import run

run()
