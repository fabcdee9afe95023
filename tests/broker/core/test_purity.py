"""The session core is pure (DESIGN, STYLE "session cores are pure"): no I/O, no clock, no store.

Two checks: every ``broker/core/*.py`` (and ``broker/input_refusals.py``, which the core runs) is
scanned like ``protocol/`` (tests/protocol/test_purity.py) and may import from the broker only the
pure modules; and importing ``broker.core`` in a fresh interpreter loads no event loop, socket,
database driver or storage module at all (so nothing it imports indirectly does I/O either).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.protocol.test_purity import violations

ROOT = Path(__file__).resolve().parents[3]
CORE_FILES = [*sorted((ROOT / "broker" / "core").glob("*.py")), ROOT / "broker" / "input_refusals.py"]

ALLOWED_BROKER_MODULES = frozenset({"core", "errors", "policy", "input_refusals", "relay"})
"""Broker modules the core may import from (``relay`` only for the ``ScreenPush`` type, under
TYPE_CHECKING); everything else of the broker is I/O: storage, server, peers, host."""

NEVER_LOADED = (
    "asyncio",
    "socket",
    "ssl",
    "sqlite3",
    "threading",
    "selectors",
    "subprocess",
    "psycopg",
    "asyncpg",
    "websockets",
    "wire",
    "cryptography",
    "broker.storage",
    "broker.store",
    "broker.session_host",
    "broker.server",
    "broker.peers",
    "broker.relay",
)


def _broker_imports(path: Path) -> list[str]:
    """The broker modules a core file imports (relative imports resolved to their top name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and path.parent.name == "core":
                continue  # within broker.core
            if node.level >= 1:
                found.append((node.module or "").split(".")[0])
            elif node.module and node.module.startswith("broker."):
                found.append(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[1] for a in node.names if a.name.startswith("broker.")]
    return found


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_a_core_module_does_no_io_and_reads_no_clock(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), path.name) == []
    assert set(_broker_imports(path)) <= ALLOWED_BROKER_MODULES


def test_the_scan_sees_a_store_import() -> None:
    probe = ROOT / "broker" / "core" / "state.py"
    assert "storage" not in _broker_imports(probe)
    assert violations("import sqlite3\nimport time\n") != []


def test_importing_the_core_loads_no_io_module() -> None:
    code = (
        "import sys, broker.core\n"
        f"bad = {NEVER_LOADED!r}\n"
        "loaded = [m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in bad)]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
