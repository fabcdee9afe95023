"""Key names the agent can press (``agent/input/inject.py``), so the command line refuses a typo
(``--key Returnx``) instead of printing "sent" for a key the agent will drop (issue 13)."""

from __future__ import annotations

__all__ = ["KEY_NAMES", "valid_key"]

_PYNPUT = (
    "alt alt_l alt_r alt_gr backspace caps_lock cmd cmd_l cmd_r ctrl ctrl_l ctrl_r delete down end "
    "enter esc home left page_down page_up right shift shift_l shift_r space tab up insert menu "
    "num_lock pause print_screen scroll_lock media_play_pause media_volume_mute media_volume_down "
    "media_volume_up media_previous media_next " + " ".join(f"f{i}" for i in range(1, 21))
).split()

_DOM = (
    "Enter Tab Backspace Delete Escape Esc ArrowLeft ArrowRight ArrowUp ArrowDown Home End PageUp "
    "PageDown Insert Shift Control Alt AltGraph Meta OS CapsLock NumLock ScrollLock PrintScreen Pause "
    "ContextMenu " + " ".join(f"F{i}" for i in range(1, 21))
).split()

KEY_NAMES: frozenset[str] = frozenset(_PYNPUT) | frozenset(_DOM)
"""pynput ``Key`` names (any case) and browser ``KeyboardEvent.key`` names."""


def valid_key(name: str) -> bool:
    """One character, or a named key the agent knows."""
    if len(name) == 1:
        return name.isprintable()
    return name in KEY_NAMES or name.lower() in _PYNPUT
