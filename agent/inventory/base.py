"""The per-OS collector interface for the machine-local items of 別紙5.

Why one method per item: consent is given item by item (別紙5: "本契約者の承諾を得て"), and a refused item
must not even be read. With one method per item, ``collect`` calls exactly the consented methods and nothing
else, which tests can check by a collector that fails if an unconsented method is called.

Each method returns a JSON-safe value or raises ``ItemUnavailable(reason)``. (2) the certificate ID comes
from the caller and (11) the router from the network probe plus the subscriber's own typing, so neither is
here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agent.inventory.model import JsonValue

__all__ = ["PlatformCollector"]


@runtime_checkable
class PlatformCollector(Protocol):
    """Reads 別紙5 items (1), (3)–(10) from the local machine; raise ``ItemUnavailable`` rather than guess."""

    def os_info(self) -> JsonValue:
        """別紙5 (1): OS type and version."""
        ...

    def machine_name(self) -> JsonValue:
        """別紙5 (3): machine name."""
        ...

    def mac_addresses(self) -> JsonValue:
        """別紙5 (4): MAC address of every physical interface."""
        ...

    def volume_serial(self) -> JsonValue:
        """別紙5 (5): serial number (or UUID) of the system volume."""
        ...

    def volume_free(self) -> JsonValue:
        """別紙5 (6): free space of the system volume."""
        ...

    def default_browser(self) -> JsonValue:
        """別紙5 (7): default browser and its version."""
        ...

    def default_mail(self) -> JsonValue:
        """別紙5 (8): default mail client (mailto handler) and its version."""
        ...

    def cpu(self) -> JsonValue:
        """別紙5 (9): CPU model and clock."""
        ...

    def memory(self) -> JsonValue:
        """別紙5 (10): memory size."""
        ...
