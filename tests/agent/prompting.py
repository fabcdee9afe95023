"""Helpers of the prompt tests: a consent request to ask, and a real pipe to type into."""

from __future__ import annotations

import os
from typing import TextIO

from protocol.messages import ConsentRequest

SCOPES = ("screen:view", "input:control", "inventory:os", "inventory:router")


def request(*scopes: str, timeout: float = 60.0, operator: str = "山田 花子") -> ConsentRequest:
    return ConsentRequest(
        id="c1", session_id="sess-00000001", operator=operator, scopes=scopes or SCOPES, timeout=timeout
    )


class Pipe:
    def __init__(self) -> None:
        read_fd, self.write_fd = os.pipe()
        self.reader_file: TextIO = os.fdopen(read_fd, "r", encoding="utf-8")
        self.closed = False

    def write(self, text: str) -> None:
        os.write(self.write_fd, text.encode("utf-8"))

    def close_writer(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.write_fd)
