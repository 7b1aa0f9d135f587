"""The screenshots and pages docs/inspector.md and the README show exist (tests/test_docs.py runs their code)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "inspector.md"


def test_images_and_links_exist() -> None:
    text = DOC.read_text()
    readme = (DOC.parents[1] / "README.md").read_text()
    for doc, body in ((DOC, text), (DOC.parents[1] / "README.md", readme)):
        for target in re.findall(r"\]\(([^)#]+\.(?:png|md))\)", body):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
    assert "images/inspector-run.png" in text and "docs/images/inspector-run.png" in readme
