"""The session host's and the listener's feeds of :class:`broker.metrics.BrokerMetrics` (issue 15,
docs/cluster.md §3 "Metrics fed").

The relay counts on the hot path (one per forwarded screen frame, one per message to an agent), so
:class:`RelayMetrics` resolves every labelled child once: a frame costs one ``Counter.inc`` (no
``labels()`` lookup, no allocation). Storage calls are milliseconds; they are timed with
:meth:`BrokerMetrics.time_storage`.

Label values stay in closed sets: directions, drop reasons, ``read``/``write``, handshake paths.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final

from .metrics import BrokerMetrics, HandshakePath, StorageOp
from .relay import ScreenPush

__all__ = ["HANDSHAKE_PATHS", "RelayMetrics", "handshake_failed"]

HANDSHAKE_PATHS: Final[dict[str | None, HandshakePath]] = {
    None: "tls",
    "/agent": "agent",
    "/operator": "operator",
    "/enroll": "enroll",
}
"""The listener's report (the request path, ``None`` when TLS itself failed) → the ``path`` label."""


def handshake_failed(metrics: BrokerMetrics) -> Callable[[str | None], None]:
    """The listener's ``on_handshake_failed``: a TLS handshake that did not complete (``None``), or a
    WebSocket upgrade on one of our paths answered with anything but 101. Other paths are plain
    HTTP answers (``/healthz``, a 404), not handshakes: not counted."""

    def failed(path: str | None) -> None:
        label = HANDSHAKE_PATHS.get(None if path is None else path.split("?", 1)[0])
        if label is not None:
            metrics.count_handshake(label, ok=False)

    return failed


class RelayMetrics:
    """Pre-resolved children of the relay and storage series for the session host. Without a
    :class:`BrokerMetrics` (unit tests of the host) they count into a registry nobody reads."""

    __slots__ = ("metrics", "no_consent", "queue_full", "stale_frame", "to_agent", "to_operator")

    def __init__(self, metrics: BrokerMetrics | None) -> None:
        m = metrics if metrics is not None else BrokerMetrics("unwatched")
        self.metrics = m
        self.to_agent = m.relay_bytes.labels(direction="to_agent")
        self.to_operator = m.relay_bytes.labels(direction="to_operator")
        self.stale_frame = m.relay_drops.labels(reason="stale_frame")
        self.queue_full = m.relay_drops.labels(reason="queue_full")
        self.no_consent = m.relay_drops.labels(reason="no_consent")

    def screen(self, result: ScreenPush) -> None:
        """One viewer's outcome of one forwarded screen update: ``DROPPED`` (this update was not
        sent: its viewer waits for a keyframe, or its node link failed) is a stale frame; ``BEHIND``
        (the viewer's queue or the node link's buffer is full: what was queued is dropped and the
        agent is asked for a keyframe) is ``queue_full``. ``REPLACED`` (a keyframe replaced queued
        updates) counts one stale frame: the queue knows how many, and reading it here would tie the
        host to one kind of peer."""
        if result is ScreenPush.QUEUED:
            return
        if result is ScreenPush.BEHIND:
            self.queue_full.inc()
        else:
            self.stale_frame.inc()

    def storage(self, op: StorageOp) -> AbstractContextManager[None]:
        return self.metrics.time_storage(op)
