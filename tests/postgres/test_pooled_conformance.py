"""The store conformance suite through pgbouncer, in transaction and in session mode."""

from tests.conformance.test_async import *  # noqa: F403
from tests.conformance.test_atomicity import *  # noqa: F403
from tests.conformance.test_checkpoints import *  # noqa: F403
from tests.conformance.test_concurrency import *  # noqa: F403
from tests.conformance.test_fork import *  # noqa: F403
from tests.conformance.test_integrity import *  # noqa: F403
from tests.conformance.test_journal import *  # noqa: F403
from tests.conformance.test_runs import *  # noqa: F403
from tests.conformance.test_storage import *  # noqa: F403
from tests.conformance.test_verify_rows import *  # noqa: F403
