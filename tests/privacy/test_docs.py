"""docs/privacy.md keeps its measured costs (its code blocks run in tests/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def test_the_page_has_measured_costs() -> None:
    text = DOC.read_text()
    assert "| sqlite | encrypted |" in text and "| postgres | encrypted |" in text
    assert "python -m bench --only w8" in text
