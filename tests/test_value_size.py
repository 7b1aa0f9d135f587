"""Big values: a cap that names the field, and 100 MB written and read back whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import clew
from clew.codec import Codec
from clew.errors import EncodeError
from tests.conftest import StoreFactory

MB = 1 << 20


def test_a_value_over_the_cap_is_refused_naming_its_field(stores: StoreFactory) -> None:
    store = stores.open(codec=Codec(max_blob_size=1 * MB))
    run = store.create_run(agent="big", state={"small": "ok"})
    head = store.get_branch(run.run_id).head
    assert head is not None
    with pytest.raises(EncodeError, match=r"state\.report.*over the codec's cap of 1,048,576") as err:
        store.commit(run.run_id, state={"small": "ok", "report": os.urandom(2 * MB)}, parent=head)
    assert err.value.path == "state.report"
    with pytest.raises(EncodeError, match=r"state\.pages\[1\]"):
        store.commit(run.run_id, state={"pages": [b"a", os.urandom(2 * MB)]}, parent=head)
    with pytest.raises(EncodeError, match=r"journal\[call\.outcome\]"):
        store.append_journal(run.run_id, [("call.outcome", {"result": os.urandom(2 * MB)})])
    assert store.get_branch(run.run_id).head == head  # nothing moved; the last good checkpoint loads
    assert store.load_state(run.run_id, head) == {"small": "ok"}
    assert store.verify(run.run_id).ok


def test_a_tool_result_over_the_cap_fails_the_run_naming_the_field(stores: StoreFactory) -> None:
    store = stores.open(codec=Codec(max_blob_size=1 * MB))
    agent = clew.Agent("big", state=dict, store=store)

    @agent.step(start=True)
    def fetch(state: dict[str, object], ctx: clew.Context) -> None:
        state["raw"] = ctx.call("download", lambda: os.urandom(2 * MB))

    with pytest.raises(EncodeError, match="over the codec's cap"):
        agent.start({"q": "x"}, run_id="r")
    head = store.get_branch("r").head
    assert head is not None and store.load_state("r", head) == {"q": "x"}


_BIG = """
import os, sys, resource, clew
MB = 1 << 20
store = clew.open(sys.argv[1])
run = store.create_run(agent="big", state={"n": 0})
head = store.get_branch(run.run_id).head
big = os.urandom(100 * MB)
ckpt = store.commit(run.run_id, state={"big": big}, parent=head)
back = store.load_state(run.run_id, ckpt.checkpoint_id)["big"]
assert back == big
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / len(big))
"""


@pytest.mark.slow
def test_a_100_mb_value_is_written_and_read_back_whole(shared_stores: StoreFactory, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _BIG, shared_stores.url], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    peak = float(out.stdout.strip())
    # Peak memory of the process, in sizes of the value: the value itself, its read-back
    # copy, and the encoder's and driver's working copies (docs/postgres.md has the figures).
    assert peak < 9, peak
