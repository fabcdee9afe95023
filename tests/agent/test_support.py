"""Where the consent question is asked: a pipe (scripts) gets the terminal prompt, a desktop
launch without a terminal gets the window, a real terminal gets both where a display exists."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import pytest

from agent.support import choose_consent_ui


@contextmanager
def _stream(kind: str) -> Iterator[TextIO]:
    if kind == "pipe":
        read, write = os.pipe()
        os.close(write)
        with os.fdopen(read) as stream:
            yield stream
    elif kind == "devnull":
        with open(os.devnull) as stream:
            yield stream
    else:
        leader, follower = os.openpty()
        try:
            with os.fdopen(follower) as stream:
                yield stream
        finally:
            os.close(leader)


@pytest.mark.parametrize(
    ("kind", "display", "expected"),
    [
        ("pipe", True, {"terminal"}),
        ("pipe", False, {"terminal"}),
        ("devnull", True, {"dialog"}),
        ("devnull", False, {"terminal"}),
        ("tty", True, {"terminal", "dialog"}),
        ("tty", False, {"terminal"}),
    ],
)
def test_auto_choice(kind: str, display: bool, expected: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", ":99")
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    with _stream(kind) as stream:
        assert choose_consent_ui("auto", stream) == expected


def test_explicit_choice_wins() -> None:
    with _stream("pipe") as stream:
        assert choose_consent_ui("dialog", stream) == {"dialog"}
        assert choose_consent_ui("both", stream) == {"terminal", "dialog"}
