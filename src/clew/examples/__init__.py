"""Example agents shipped with clew; ``clew demo`` runs :mod:`clew.examples.support_agent`."""
