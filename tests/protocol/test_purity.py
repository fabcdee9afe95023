"""``protocol/`` is pure (STYLE "Our own habits" 2): no I/O, no event loop, no clock, no randomness.

Every ``protocol/**/*.py`` is parsed (never imported) and scanned for forbidden imports and calls,
including files added later (e.g. ``protocol/screen.py``) and subpackages (``protocol/messages/``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"
AGENT_CORE_DIR = Path(__file__).resolve().parents[2] / "agent" / "core"
"""The agent's session core is pure in the same way (docs/agent-core.md)."""

FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "ssl",
        "time",
        "select",
        "selectors",
        "threading",
        "subprocess",
        "os",
        "io",
        "pathlib",
        "random",
    }
)
FORBIDDEN_CALLS = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("time", "time"),
        ("time", "monotonic"),
        ("time", "perf_counter"),
    }
)
FORBIDDEN_BUILTINS = frozenset({"open", "__import__", "input"})


def violations(source: str, filename: str = "<test>") -> list[str]:
    """Every impure import or call in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"{filename}:{node.lineno}: {func.id}()")
            elif isinstance(func, ast.Attribute):
                owner = func.value
                # datetime.now(), datetime.datetime.now(), time.time() ...
                owner_name = (
                    owner.id
                    if isinstance(owner, ast.Name)
                    else owner.attr
                    if isinstance(owner, ast.Attribute)
                    else None
                )
                if (owner_name, func.attr) in FORBIDDEN_CALLS:
                    found.append(f"{filename}:{node.lineno}: {owner_name}.{func.attr}()")
    return found


def _protocol_files() -> list[Path]:
    return sorted(PROTOCOL_DIR.rglob("*.py"))


def _agent_core_files() -> list[Path]:
    return sorted(AGENT_CORE_DIR.glob("*.py"))


def test_the_core_modules_are_scanned() -> None:
    names = {p.relative_to(PROTOCOL_DIR).as_posix() for p in _protocol_files()}
    assert {"__init__.py", "codec.py", "errors.py", "limits.py", "link.py", "messages/__init__.py"} <= names
    assert {"messages/fields.py", "messages/session.py", "messages/operators.py"} <= names


@pytest.mark.parametrize("path", _protocol_files(), ids=lambda p: p.relative_to(PROTOCOL_DIR).as_posix())
def test_protocol_module_is_pure(path: Path) -> None:
    assert violations(path.read_text("utf-8"), path.relative_to(PROTOCOL_DIR).as_posix()) == []


def test_the_agent_core_modules_are_scanned() -> None:
    assert {"__init__.py", "session.py", "inputs.py", "actions.py"} <= {p.name for p in _agent_core_files()}


@pytest.mark.parametrize("path", _agent_core_files(), ids=lambda p: p.name)
def test_agent_core_module_is_pure(path: Path) -> None:
    assert violations(path.read_text("utf-8"), path.name) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os.path",
        "from socket import socket",
        "from ssl import SSLContext",
        "import time as t",
        "from random import random",
        "import threading, json",
        "from pathlib import Path",
        "data = open('x').read()",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.utcnow()",
        "from datetime import date\nx = date.today()",
        "x = time.time()",
    ],
)
def test_the_scanner_catches_impurity(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import json\nimport msgspec",
        "from . import codec",
        "from .limits import Limits",
        "from datetime import datetime, UTC\nx = datetime.fromtimestamp(0, UTC)",
        "import hashlib\nhashlib.sha256(b'')",
    ],
)
def test_the_scanner_allows_pure_code(source: str) -> None:
    assert violations(source) == []
