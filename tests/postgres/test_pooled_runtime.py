"""The runtime suite through pgbouncer, in transaction and in session mode."""

from tests.runtime.test_agent import *  # noqa: F403
from tests.runtime.test_async import *  # noqa: F403
from tests.runtime.test_branch_status import *  # noqa: F403
from tests.runtime.test_fork import *  # noqa: F403
from tests.runtime.test_interrupts import *  # noqa: F403
from tests.runtime.test_leases import *  # noqa: F403
from tests.runtime.test_ledger import *  # noqa: F403
