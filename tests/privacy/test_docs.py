"""Every ```python block of docs/privacy.md runs, as written, in a fresh directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_page_has_examples_and_measured_costs() -> None:
    assert len(BLOCKS) >= 5
    text = DOC.read_text()
    assert "COSTS_TABLE" not in text
    assert "| sqlite | encrypted |" in text


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_block_runs(n: int, tmp_path: Path) -> None:
    script = tmp_path / f"privacy_block_{n}.py"
    script.write_text(BLOCKS[n])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docs/privacy.md block {n} failed:\n{BLOCKS[n]}\n{done.stderr}"
