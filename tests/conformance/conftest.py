"""Fixtures of the conformance suite: raw SQL access next to the store under test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import clew
from tests.helpers.raw import Raw


@pytest.fixture
def raw(stores: Any, store: clew.Store) -> Iterator[Raw]:
    r = Raw(stores, store)
    yield r
    r.close()


@pytest.fixture
def run_id(store: clew.Store) -> str:
    return store.create_run(agent="conformance").run_id
