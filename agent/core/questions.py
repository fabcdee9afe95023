"""The consent questions open in one session, with their deadlines (no answer in time = no).

Pure bookkeeping for :class:`agent.core.AgentCore`: a question has an id the adapter's answer
names, the broker's request, and the time it runs out (``now + request.timeout``).
"""

from __future__ import annotations

from protocol.messages import ConsentRequest

__all__ = ["Questions"]


class Questions:
    def __init__(self) -> None:
        self._open: dict[str, tuple[ConsentRequest, float]] = {}
        self._count = 0

    def open(self, request: ConsentRequest, now: float) -> str:
        self._count += 1
        question = f"q{self._count}"
        self._open[question] = (request, now + request.timeout)
        return question

    def asking(self, request: ConsentRequest) -> str | None:
        """The open question that already asks ``request`` (the broker sends an unanswered
        request again when the agent reconnects), or None."""
        for question, (open_request, _) in self._open.items():
            if (open_request.id, open_request.scopes, open_request.viewer) == (
                request.id,
                request.scopes,
                request.viewer,
            ):
                return question
        return None

    def take(self, question: str) -> ConsentRequest | None:
        """The request ``question`` asked, closing it; None when it is not open (timed out, void)."""
        entry = self._open.pop(question, None)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        return min((deadline for _, deadline in self._open.values()), default=None)

    def due(self, now: float) -> list[tuple[str, ConsentRequest, bool]]:
        """Close and return the questions whose time ran out: (id, request, about a person)."""
        ran_out = [q for q, (_, deadline) in self._open.items() if deadline <= now]
        return [(q, request, bool(request.viewer)) for q in ran_out for request in [self._open.pop(q)[0]]]

    def void(self) -> list[str]:
        """The session ended: every open question is void; returns their ids."""
        questions = list(self._open)
        self._open.clear()
        return questions

    def __len__(self) -> int:
        return len(self._open)
