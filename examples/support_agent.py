"""The support agent demo: a durable run that crashes, resumes, pauses for review and forks.

Its source ships with clew, in ``clew/examples/support_agent.py``, so that ``clew demo``
works wherever clew is installed. Run this file, ``clew demo`` or
``python -m clew.examples.support_agent``; ``--db FILE`` keeps the run in FILE.
"""

import sys

from clew.examples.support_agent import cli

if __name__ == "__main__":
    sys.exit(cli())
