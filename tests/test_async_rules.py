"""No product code swallows a cancellation (wire/tasks.py tells the shutdown hang this caused).

``with suppress(CancelledError): await task`` and ``except CancelledError: pass`` also swallow the
cancellation of the task that awaits, so its owner can no longer be stopped; product code stops a
task with ``wire.tasks.stop_task``. (``asyncio.wait_for``, the other way a cancellation was lost, is
banned by ruff: pyproject.toml.) Every ``*.py`` of the product and the bench is read, so new code is
held to it too.
"""

from __future__ import annotations

import ast

from tests.test_module_size import ROOT, modules


def _names_cancelled_error(node: ast.expr | None) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Tuple):
        return any(_names_cancelled_error(e) for e in node.elts)
    return isinstance(node, ast.Attribute | ast.Name) and ast.unparse(node).endswith("CancelledError")


def swallowed_cancellations(source: str) -> list[int]:
    """Lines that suppress ``CancelledError``, or catch it without raising again."""
    found: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            suppressing = ast.unparse(node.func).endswith("suppress")
            if suppressing and any(_names_cancelled_error(arg) for arg in node.args):
                found.append(node.lineno)
        elif isinstance(node, ast.ExceptHandler) and _names_cancelled_error(node.type):
            raises_again = any(isinstance(n, ast.Raise) for n in ast.walk(node))
            found.extend([] if raises_again else [node.lineno])
    return sorted(found)


def test_no_module_swallows_a_cancellation() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in modules()
        if (lines := swallowed_cancellations(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_rule_finds_what_it_is_for() -> None:
    assert swallowed_cancellations(
        "import asyncio, contextlib\n"
        "async def f(t):\n"
        "    with contextlib.suppress(asyncio.CancelledError):\n"
        "        await t\n"
        "    try:\n"
        "        await t\n"
        "    except (ValueError, asyncio.CancelledError):\n"
        "        pass\n"
    ) == [3, 7]
    assert (
        swallowed_cancellations(  # a handler that raises again is the right way
            "import asyncio\nasync def f(t):\n    try:\n        await t\n    except asyncio.CancelledError:\n"
            "        t.cancel()\n        raise\n"
        )
        == []
    )
