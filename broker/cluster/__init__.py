"""Building blocks of the broker cluster (docs/cluster.md): the signalling bus between processes
(:mod:`.bus` in-process, :mod:`.nats_bus` on NATS), the signals (:mod:`.signals`), the node table
(:mod:`.nodes`), the node-to-node link for session traffic (:mod:`.link`), the HAProxy front door
(:mod:`.haproxy`), the server's one handle on all of them (:mod:`.node`: ``ClusterNode``), the
``/metrics`` and ``/readyz`` answers (:mod:`.ops`, served today) and ``serve``'s option types
(:mod:`.options`). ``ClusterNode`` is not owned by the running broker yet (docs/cluster.md §7).

``nats_bus`` is imported only by :func:`open_bus` when a NATS URL is given (it needs the ``cluster``
extra); the embedded default uses :class:`.bus.LocalBus` and needs nothing.
"""

from __future__ import annotations

from protocol.errors import ErrorCode

from ..errors import BrokerError
from .bus import Bus, LocalBus
from .signals import DEFAULT_PREFIX, new_node_id

__all__ = ["open_bus"]


def open_bus(nats_url: str | None, *, node: str | None = None, prefix: str = DEFAULT_PREFIX) -> Bus:
    """The bus a broker process uses: on NATS when ``nats_url`` is given (``nats://host:4222``, several
    comma-separated), else in-process (one process, ``./scripts/serve``). Not started yet."""
    node = node or new_node_id()
    if not nats_url:
        return LocalBus(node)
    if not nats_url.startswith(("nats://", "tls://")):
        raise BrokerError(
            f"a NATS URL starts with nats:// or tls://, not {nats_url!r}", code=ErrorCode.INVALID_FIELD
        )
    try:
        from .nats_bus import NatsBus
    except ImportError:  # pragma: no cover - depends on what is installed
        raise BrokerError(
            "the cluster bus needs nats-py: pip install 'isp-remote-support[cluster]'"
        ) from None
    return NatsBus(node, url=nats_url, prefix=prefix)
