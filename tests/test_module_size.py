"""No module of the product or the bench is over 500 lines (issue 14: "no module over ~500 lines").

Small modules named for what they hold (STYLE, "Our own habits" 8) are what a reader can find their
way in; a module that grows past the limit is split by what it holds, keeping its import surface
(``protocol.messages``, ``bench.harness`` and ``agent.prompt`` show how). Every ``*.py`` below the
packages is counted, subpackages included, so a module added later is held to the limit too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("broker", "agent", "protocol", "wire", "helpdesk", "certs", "bench")
MAX_LINES = 500


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_package_is_counted() -> None:
    found = {p.relative_to(ROOT).parts[0] for p in modules()}
    assert found == set(PACKAGES)
    assert (ROOT / "protocol" / "messages" / "__init__.py") in modules()  # subpackages too


def test_no_module_is_over_the_limit() -> None:
    counts = {p.relative_to(ROOT).as_posix(): line_count(p) for p in modules()}
    over = {name: lines for name, lines in counts.items() if lines > MAX_LINES}
    assert over == {}, f"split these by what they hold (more than {MAX_LINES} lines): {over}"


def test_the_count_is_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("a = 1\n\nb = 2\n", encoding="utf-8")
    assert line_count(path) == 3
    path.write_text("x = 1", encoding="utf-8")  # no final newline: still a line
    assert line_count(path) == 1
