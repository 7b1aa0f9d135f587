"""Every ```python block of the README runs, as written, in a fresh directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python blocks"


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_readme_block_runs(n: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_block_{n}.py"
    script.write_text(BLOCKS[n])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"README block {n} failed:\n{BLOCKS[n]}\n{done.stderr}"
