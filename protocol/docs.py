"""Render the protocol's tables as Markdown, so the docs are generated from the code (h11 style).

``python -m protocol.docs`` prints the session transition table, the scope requirements and
the error codes; ``docs/protocol.md`` embeds that output and a test checks it is current.
"""

from __future__ import annotations

from .errors import ErrorCode
from .messages import MESSAGE_TYPES
from .session import REQUIREMENTS, SENDERS, TRANSITIONS


def render() -> str:
    lines = [
        "### Session transitions (`protocol/session.py` `TRANSITIONS`)",
        "",
        "| from | on | to |",
        "|---|---|---|",
    ]
    lines += [
        f"| {phase.value} | {trigger.value} | {target.value} |"
        for (phase, trigger), target in TRANSITIONS.items()
    ]
    lines += [
        "",
        "### Who may send each message, when, and what it needs (`SENDERS`, `REQUIREMENTS`)",
        "",
        "| message | senders | phases | scope |",
        "|---|---|---|---|",
    ]
    for kind, (phases, scope) in REQUIREMENTS.items():
        names = ", ".join(sorted(p.value for p in phases))
        needs = scope or ("inventory:<item>, each item" if kind == "inventory_report" else "-")
        senders = ", ".join(sorted(r.value for r in SENDERS.get(kind, ()))) or "-"
        lines.append(f"| {kind} | {senders} | {names} | {needs} |")
    lines += ["", "### Message types", "", ", ".join(f"`{name}`" for name in sorted(MESSAGE_TYPES))]
    lines += [
        "",
        "### Error codes (`protocol/errors.py` `ErrorCode`)",
        "",
        ", ".join(f"`{c.value}`" for c in ErrorCode),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
