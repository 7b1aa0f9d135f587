"""Every ```python block of docs/inspector.md runs as written; the screenshots it shows exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "inspector.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", TEXT, flags=re.S | re.M)


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_inspector_doc_block_runs(n: int, tmp_path: Path) -> None:
    script = tmp_path / f"block_{n}.py"
    script.write_text(BLOCKS[n])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docs/inspector.md block {n} failed:\n{BLOCKS[n]}\n{done.stderr}"


def test_images_and_links_exist() -> None:
    assert BLOCKS
    readme = (DOC.parents[1] / "README.md").read_text()
    for doc, text in ((DOC, TEXT), (DOC.parents[1] / "README.md", readme)):
        for target in re.findall(r"\]\(([^)#]+\.(?:png|md))\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
    assert "images/inspector-run.png" in TEXT and "docs/images/inspector-run.png" in readme
