"""The agent's pure session core: broker messages, the subscriber's answers and ``now`` in,
actions out (aioquic / mitmproxy style; STYLE "Our own files to copy the shape of").

:class:`AgentCore` holds one support session from the subscriber's side: the support code, the
consent questions and their timeouts, the agent's own :class:`agent.consent_record.ConsentRecord`
(the authority on consent, DESIGN §2), when to share the screen (exactly once per grant), which
inventory items may be collected (別紙5), the restart and resume flow. It reads no clock and does
no I/O: adapters (the terminal session, the desktop app) feed it :mod:`agent.core.inputs` and
``protocol.messages`` objects with the time, run the :mod:`agent.core.actions` it answers with,
and arm :meth:`AgentCore.next_timer`. See docs/agent-core.md.
"""

from __future__ import annotations

from . import actions, inputs
from .session import AgentCore, CoreConfig, Resume

__all__ = ["AgentCore", "CoreConfig", "Resume", "actions", "inputs"]
