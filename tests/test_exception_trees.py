"""Each package has ONE exception tree with stable codes (issue 14, STYLE "Our own habits" 5).

Every module of ``broker/``, ``agent/``, ``protocol/``, ``wire/`` and ``helpdesk/`` is imported
and every exception class *defined* in it must descend from its package's root:

    protocol  ProtocolError   (protocol/errors.py)
    broker    BrokerError     (broker/errors.py)
    agent     AgentError      (agent/errors.py)
    wire      ProtocolError   (wire/ is the protocol's asyncio adapter and defines none of its own)
    helpdesk  HelpdeskError   (helpdesk/client.py)

and its ``code`` must be a member of the package's closed code set (``ErrorCode``, and for the
agent also ``AgentErrorCode``). Nothing is allowed outside. A module this platform cannot import
(the Windows service) is parsed instead, and may not derive a class from a built-in exception.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

from agent.errors import AgentError, AgentErrorCode
from broker.errors import BrokerError
from helpdesk.client import HelpdeskError
from protocol.errors import ErrorCode, ProtocolError

ROOTS: dict[str, type[BaseException]] = {
    "protocol": ProtocolError,
    "broker": BrokerError,
    "agent": AgentError,
    "wire": ProtocolError,
    "helpdesk": HelpdeskError,
}
CODES: dict[str, tuple[type, ...]] = {
    "protocol": (ErrorCode,),
    "broker": (ErrorCode,),
    "agent": (AgentErrorCode, ErrorCode),
    "wire": (ErrorCode,),
}
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException)
)


def _modules(package: str) -> tuple[list[ModuleType], list[Path]]:
    root = importlib.import_module(package)
    imported: list[ModuleType] = [root]
    unimportable: list[Path] = []
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        try:
            imported.append(importlib.import_module(info.name))
        except ModuleNotFoundError as exc:  # a platform module (Windows service): parsed instead
            missing = exc.name or ""
            if missing.split(".")[0] in ROOTS:
                raise  # one of ours must always import
            spec = importlib.util.find_spec(info.name)
            if spec is None or spec.origin is None:
                raise
            unimportable.append(Path(spec.origin))
    return imported, unimportable


def _defined_exceptions(module: ModuleType) -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    pending = [obj for obj in vars(module).values() if inspect.isclass(obj)]
    while pending:  # nested classes too
        cls = pending.pop()
        if cls.__module__ != module.__name__:
            continue
        if issubclass(cls, BaseException):
            found.append(cls)
        pending.extend(obj for obj in vars(cls).values() if inspect.isclass(obj) and obj is not cls)
    return found


@pytest.mark.parametrize("package", list(ROOTS))
def test_every_exception_is_in_its_package_tree(package: str) -> None:
    root = ROOTS[package]
    imported, unimportable = _modules(package)
    assert len(imported) > 1
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for module in imported
        for cls in _defined_exceptions(module)
        if not issubclass(cls, root)
    ]
    assert not outside, f"exceptions outside {root.__name__}'s tree: {outside}"
    for path in unimportable:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                assert not names & BUILTIN_EXCEPTIONS, f"{path}: {node.name} derives from {names}"


@pytest.mark.parametrize("package", list(CODES))
def test_every_exception_has_a_code_from_the_closed_set(package: str) -> None:
    imported, _ = _modules(package)
    classes = {cls for module in imported for cls in _defined_exceptions(module)}
    assert classes or package == "wire"  # wire defines none of its own
    for cls in classes:
        code = getattr(cls, "code", None)
        assert isinstance(code, CODES[package]), f"{cls.__module__}.{cls.__qualname__}.code = {code!r}"


def test_the_walk_finds_the_exceptions_it_must_judge() -> None:
    """A walk that found nothing would pass for the wrong reason."""
    imported, _ = _modules("agent")
    names = {cls.__name__ for module in imported for cls in _defined_exceptions(module)}
    assert {"InputRejected", "CaptureError", "ItemUnavailable", "CommandError", "ReceiptRejected"} <= names
    imported, _ = _modules("broker")
    names = {cls.__name__ for module in imported for cls in _defined_exceptions(module)}
    assert {"QueueOverflow", "BacklogFull", "DataKeyError", "DataKeyMissing"} <= names
