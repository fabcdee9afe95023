"""Test doubles for the injected OS interfaces: a ``reg query`` fixture reader, a scripted command runner."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent.inventory.commands import CommandError
from agent.inventory.windows import RegValue, normalize_key

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text(encoding="utf-8")


class RegQueryFixture:
    """RegistryReader over recorded ``reg query KEY /s`` output (4-space separated name, type, data)."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, str], RegValue] = {}
        self.reads: list[tuple[str, str]] = []
        key: str | None = None
        for raw in text.splitlines():
            if not raw.strip():
                continue
            if not raw.startswith(" "):
                key = normalize_key(raw.strip()).lower()
                continue
            assert key is not None, "value line before any key line"
            parts = raw.strip().split("    ", 2)
            name, kind = parts[0], parts[1]
            data = parts[2] if len(parts) > 2 else ""
            if name == "(Default)":
                name = ""
            value: RegValue
            if kind in ("REG_DWORD", "REG_QWORD"):
                value = int(data, 16)
            elif kind == "REG_BINARY":
                value = bytes.fromhex(data)
            elif kind == "REG_MULTI_SZ":
                value = data.split("\\0") if data else []
            else:
                value = data
            self.values[(key, name.lower())] = value

    def read_value(self, key: str, name: str) -> RegValue | None:
        self.reads.append((key, name))
        return self.values.get((normalize_key(key).lower(), name.lower()))


class FakeVolumes:
    """VolumeInfoReader with fixed answers per root; roots not listed raise like a missing drive."""

    def __init__(self, serials: Mapping[str, int], free: Mapping[str, int]) -> None:
        self.serials = dict(serials)
        self.free = dict(free)

    def volume_serial(self, root: str) -> int:
        if root not in self.serials:
            raise FileNotFoundError(3, "The system cannot find the path specified")
        return self.serials[root]

    def free_bytes(self, root: str) -> int:
        if root not in self.free:
            raise FileNotFoundError(3, "The system cannot find the path specified")
        return self.free[root]


class ScriptedRunner:
    """CommandRunner answering from a table of argv -> stdout (or a CommandError message); records calls."""

    def __init__(self, answers: Mapping[tuple[str, ...], str | CommandError]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: Sequence[str]) -> str:
        key = tuple(args)
        self.calls.append(key)
        answer = self.answers.get(key)
        if answer is None:
            raise CommandError(f"{args[0]} not found")
        if isinstance(answer, CommandError):
            raise answer
        return answer


def file_versions(table: Mapping[str, str]) -> Callable[[str], str | None]:
    def lookup(path: str) -> str | None:
        return table.get(path)

    return lookup
