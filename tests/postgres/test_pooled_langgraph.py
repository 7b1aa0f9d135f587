"""The LangGraph saver through pgbouncer, in transaction and in session mode."""

from tests.integrations.test_langgraph_conformance import *  # noqa: F403
from tests.integrations.test_langgraph_graphs import *  # noqa: F403
