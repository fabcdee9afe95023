"""Building blocks of the broker cluster (docs/cluster.md): the signalling bus between processes
(:mod:`.bus` in-process, :mod:`.nats_bus` on NATS), the signals (:mod:`.signals`) and the HAProxy
front door (:mod:`.haproxy`). Not wired into the running broker yet.

``nats_bus`` is imported on its own (it needs the ``cluster`` extra); the embedded default uses
:class:`.bus.LocalBus` and needs nothing.
"""
