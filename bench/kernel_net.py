"""The kernel's view of a loopback benchmark: packets the per-CPU backlog dropped, TCP connections
aborted on a timeout, listen-queue overflows; and the backlog's size for the run.

At 100,000 agents on 127.0.0.1 every packet of both ends goes through the per-CPU input backlog
(``net.core.netdev_max_backlog``, 1,000 packets by default). The kernel fires TCP keepalive timers in
batches, so thousands of probes and their answers arrive at once: the backlog overflowed, probes were
lost, and the kernel aborted healthy connections after three lost probes (77,815 aborts in one run,
docs/PERFORMANCE.md). Between real hosts the probes cross NICs with rings of their own and do not
meet in one queue. :func:`loopback_backlog` raises the limit for the run (and puts it back); the
counters are reported either way, so a run says whether the kernel dropped anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BACKLOG = Path("/proc/sys/net/core/netdev_max_backlog")
COUNTERS = ("TCPAbortOnTimeout", "ListenOverflows", "TCPTimeouts", "TCPKeepAlive")


def counters() -> dict[str, int]:
    """Softnet drops (all CPUs) and a few ``TcpExt`` counters, since boot."""
    out = {"softnet_dropped": 0}
    try:
        for line in Path("/proc/net/softnet_stat").read_text().splitlines():
            out["softnet_dropped"] += int(line.split()[1], 16)
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[0::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            out.update({name: int(table.get(name, 0)) for name in COUNTERS})
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


@contextmanager
def loopback_backlog(packets: int) -> Iterator[int | None]:
    """``netdev_max_backlog`` raised to ``packets`` for the block when it is lower and writable (root);
    yields the size in effect (None when it could not be read). ``packets`` 0: left alone."""
    try:
        old = int(BACKLOG.read_text())
    except (OSError, ValueError):
        yield None
        return
    if packets <= old:
        yield old
        return
    try:
        BACKLOG.write_text(str(packets))
    except OSError:
        yield old
        return
    try:
        yield packets
    finally:
        BACKLOG.write_text(str(old))
