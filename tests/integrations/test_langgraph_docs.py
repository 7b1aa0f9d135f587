"""docs/langgraph.md stays true: its Python examples run, in order, in one namespace."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "langgraph.md"


def test_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    module = types.ModuleType("langgraph_doc")  # a real module: LangGraph reads the state's type hints
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), module.__dict__)
    assert capsys.readouterr().out.strip().endswith("3 messages so far")
    assert (tmp_path / "agent.db").exists()
