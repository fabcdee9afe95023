"""docs/protocol.md carries the state table rendered from the code; a change to one needs the other."""

from __future__ import annotations

from pathlib import Path

from protocol.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_tables_are_current() -> None:
    text = DOC.read_text("utf-8")
    generated = text.split("<!-- generated:begin -->\n", 1)[1].split("<!-- generated:end -->", 1)[0]
    assert generated == render(), "run: python -m protocol.docs and paste the output into docs/protocol.md"
