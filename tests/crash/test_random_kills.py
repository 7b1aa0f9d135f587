"""Real processes SIGKILLed at random points; every run still ends exactly as an uninterrupted one.

Each trial kills the process driving one run one to three times, at a random crash
point (the K-th store call or side effect, K random) or after a random delay (which
may land inside a transaction), then lets a process finish it, by resuming as the same
worker or by ``recover()`` on another once the lease expires. Trials run in a few
long-lived batch processes in parallel (``_batch.py``); ``CLEW_CRASH_TRIALS=4`` runs
four times the default number of trials; ``CLEW_CRASH_SEED=n`` reuses a printed seed
(the same kill plan; timer kills land where timing takes them).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import StoreFactory
from tests.crash.conftest import check_run, module, reference, trials

pytestmark = pytest.mark.slow
BATCHES = 3


@pytest.mark.parametrize("calls", ["at_once", "with_checkpoint"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_random_sigkills(
    stores: StoreFactory, tmp_path: Path, backend: str, calls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when idempotent calls are journaled: at once, or with the step's checkpoint
    monkeypatch.setenv("CLEW_CRASH_IDEMPOTENT_CALLS", calls)
    stores.open()  # create the schema once, before the batches start
    ref = reference(tmp_path)
    n = trials(backend)
    effects = tmp_path / "effects"
    effects.mkdir()
    seed = int(os.environ.get("CLEW_CRASH_SEED") or random.randrange(1 << 30))
    started = time.monotonic()
    procs = []
    for b in range(BATCHES):
        count = n // BATCHES + (1 if b < n % BATCHES else 0)
        out = tmp_path / f"batch{b}.jsonl"
        args = ["--url", stores.url, "--effects", str(effects), "--out", str(out)]
        args += ["--prefix", f"b{b}", "--trials", str(count), "--seed", str(seed + b)]
        procs.append((module("_batch", *args), out))
    results = []
    for proc, out in procs:
        _, err = proc.communicate(timeout=170)
        lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        failed = [r for r in lines if "error" in r]
        assert proc.returncode == 0 and not failed, f"seed {seed}: {err.decode()}\n{failed}"
        results.extend(lines)
    took = time.monotonic() - started
    assert len(results) == n

    store = stores.open()
    kinds: Counter[str] = Counter()
    for r in results:
        kinds += check_run(store, effects, r["run_id"], ref)
    kills = sum(1 for r in results for rd in r["rounds"] if rd["killed"])
    killed_trials = sum(1 for r in results if any(rd["killed"] for rd in r["rounds"]))
    recovered = sum(r["recover"] for r in results)
    summary = (
        f"{backend}: {n} trials in {took:.1f}s, seed {seed}: {kills} kills, {killed_trials} trials killed, "
        f"{recovered} finished by recover(), {kinds['unknown_outcome']} unknown outcomes answered by a person, "
        f"{kinds['stale_refused']} calls of stalled workers refused by the service's fencing-token check"
    )
    print(summary)
    assert killed_trials >= 0.6 * n, summary  # the trials did crash (a late timer may miss a quick run)
