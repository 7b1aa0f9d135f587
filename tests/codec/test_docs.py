"""docs/codec.md stays true: its examples run and its tables match the code."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

import clew
from clew.codec import Codec, _envelope, _types

DOC = Path(__file__).resolve().parents[2] / "docs" / "codec.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_examples_run(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks that open a store make their file here
    block = _python_blocks()[index]
    namespace = {"Codec": Codec, "Decimal": Decimal, "clew": clew}
    exec(block, namespace)
    store = namespace.get("store")
    if isinstance(store, clew.Store):
        assert store.codec.allow_pickle or "allow_pickle" not in block
        store.close()


def test_extension_code_table_matches_the_registry() -> None:
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| (\d*) ?\| ([^|]*)\|$", DOC.read_text(), re.M)
    documented = {int(code): name.strip() for row in rows for code, name in (row[:2], row[2:]) if code}
    actual = {value: name for name, value in vars(_types).items() if name.startswith("EXT_")}
    assert sorted(documented) == sorted(actual)


def test_envelope_constants_match() -> None:
    text = DOC.read_text()
    assert f"byte 0   0x{_envelope.MAGIC:X}" in text
    assert f"0x{_envelope.FLAG_ZSTD:02x} payload is zstd-compressed" in text
    assert f"0x{_envelope.FLAG_PICKLE:02x} payload holds pickled values" in text


def test_documented_defaults_match() -> None:
    text = DOC.read_text()
    assert "Codec(*, allow_pickle=False, compress_threshold=256, zstd_level=3, max_blob_size=1 << 30)" in text
    codec = Codec()
    assert codec.allow_pickle is False
    assert codec.encode(b"\x00" * 250)[1] == 0  # 252 bytes of plaintext: under the threshold
    assert codec.encode(b"\x00" * 260)[1] == 1
