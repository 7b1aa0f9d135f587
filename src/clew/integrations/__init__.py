"""Adapters that plug clew stores into agent frameworks.

Each integration lives in its own subpackage and needs its optional extra, e.g.
``pip install 'clew[langgraph]'`` for :mod:`clew.integrations.langgraph`.
"""
