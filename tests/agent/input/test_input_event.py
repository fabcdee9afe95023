"""Key-name mapping and the local input guard (no display needed). The input event itself is the
protocol's ``InputEvent``, validated there (tests/protocol/test_input_event.py)."""

from __future__ import annotations

from agent.input.inject import DOM_KEY_NAMES, GuardKind, LocalInputGuard


def test_dom_names_map_to_pynput_names() -> None:
    assert DOM_KEY_NAMES["Enter"] == "enter"
    assert DOM_KEY_NAMES["ArrowLeft"] == "left"
    assert DOM_KEY_NAMES["F12"] == "f12"


def test_guard_pauses_on_local_events_only() -> None:
    t = [100.0]
    guard = LocalInputGuard(pause_seconds=2.0, expect_window=0.5, clock=lambda: t[0])
    assert not guard.paused(100.0)
    guard.expect("key", 2)
    guard.note_local("key")
    guard.note_local("key")
    assert not guard.paused(100.0)  # both were ours
    guard.note_local("key")
    assert guard.paused(100.0)
    assert guard.paused(101.9)
    assert not guard.paused(102.0)


def test_guard_expectations_expire() -> None:
    t = [0.0]
    guard = LocalInputGuard(expect_window=0.5, clock=lambda: t[0])
    guard.expect("button")
    t[0] = 0.6
    guard.note_local("button")
    assert guard.paused(0.6)


def test_guard_trusts_os_injected_flag_and_motion_setting() -> None:
    guard = LocalInputGuard(pause_on_motion=False, clock=lambda: 0.0)
    guard.note_local("key", injected=True)
    guard.note_local("move")
    assert not guard.paused(0.0)
    guard.note_local("scroll")
    assert guard.paused(0.0)


def test_guard_knows_its_own_moves_by_position_even_to_where_the_pointer_already_is() -> None:
    """Issue 13: a move to the pointer's own position was announced to nobody, its XTest echo
    counted as the subscriber's movement, and remote input paused for 2 s."""
    guard = LocalInputGuard(pause_seconds=2.0, expect_window=0.5, clock=lambda: 10.0)
    guard.expect("move", at=(100, 200))
    guard.expect("move", at=(100, 200))  # the same place again
    guard.note_local("move", at=(100, 200))
    guard.note_local("move", at=(100, 200))
    assert not guard.paused(10.0)
    guard.expect("move", at=(300, 300))
    guard.note_local("move", at=(301, 300))  # the subscriber's hand, one pixel off ours
    assert guard.paused(10.0)


def test_guard_motion_without_position_is_local() -> None:
    guard = LocalInputGuard(clock=lambda: 0.0)
    guard.expect("move", at=(1, 1))
    guard.note_local("move")
    assert guard.paused(0.0)


def test_pynputs_own_report_of_an_injected_event_does_not_use_up_the_echos_expectation() -> None:
    """pynput's controller reports each event it sends to this process's listeners (injected),
    and the X server's echo follows (not flagged): both are ours, neither pauses."""
    guard = LocalInputGuard(clock=lambda: 5.0)
    guard.expect("key")
    guard.expect("move", at=(10, 10))
    guard.expect("button")
    kinds: tuple[GuardKind, ...] = ("key", "move", "button")
    for kind in kinds:
        guard.note_local(kind, injected=True, at=(10, 10))
        guard.note_local(kind, at=(10, 10))
    assert not guard.paused(5.0)
