"""B's handle of an operator on another process (``RemoteOperator``) over a real node link: a screen
frame the full link drops is reported as behind (B's core asks the agent for a keyframe), and the
updates after it are not sent until that keyframe, so the operator never paints a delta on a picture
it did not get (as a local viewer's queue does, ``broker.relay.OutboundQueue``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from broker.cluster.link import ClusterCA, FrameKind, LinkServer, dial
from broker.relay import ScreenPush
from broker.session_links import RemoteOperator
from tests.broker.cluster.test_link import Received

NOW = datetime.now(UTC)


async def test_after_a_dropped_frame_only_a_keyframe_goes_until_the_link_drains() -> None:
    ca = ClusterCA.create(now=NOW)
    a, b = ca.issue("node-a", host="127.0.0.1", now=NOW), ca.issue("node-b", host="127.0.0.1", now=NOW)
    received = Received()
    server = LinkServer(a, received)  # A: the operator's process, receives the screen frames
    port = await server.start("127.0.0.1", 0)
    try:
        link = await dial(b, "node-a", "127.0.0.1", port, Received())  # B: holds the agent
        await asyncio.sleep(0.05)
        (a_end,) = server.links
        assert a_end.transport is not None
        a_end.transport.pause_reading()  # A does not read for a while
        op = RemoteOperator(link, "o1", "s1")
        pushes = [op.send_screen(b"\x00" * 65_536, keyframe=False) for _ in range(200)]
        assert ScreenPush.BEHIND in pushes
        first_drop = pushes.index(ScreenPush.BEHIND)
        # after the first drop, nothing but DROPPED until a keyframe
        assert set(pushes[first_drop + 1 :]) <= {ScreenPush.DROPPED}
        sent = first_drop
        a_end.transport.resume_reading()
        await received.until(sent)
        assert op.send_screen(b"\x00" * 100, keyframe=False) is ScreenPush.DROPPED
        assert op.send_screen(b"\x01" * 100, keyframe=True) is ScreenPush.QUEUED
        assert op.send_screen(b"\x02" * 100, keyframe=False) is ScreenPush.QUEUED
        await received.until(sent + 2)
        tail = [f.payload.partition(b"\n")[2][:1] for _, f in received.frames[sent:]]
        assert tail == [b"\x01", b"\x02"]
        assert all(f.kind is FrameKind.SCREEN for _, f in received.frames)
        link.close()
    finally:
        await server.close()
