"""One ``agent run`` per data directory: the lock is the OS's, so it goes away with its process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.instance import LOCK_FILE, AlreadyRunning, single_instance


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with single_instance(tmp_path):
        assert stat.S_IMODE((tmp_path / LOCK_FILE).stat().st_mode) == 0o600
        with pytest.raises(AlreadyRunning) as refused, single_instance(tmp_path):
            pass
        assert refused.value.pid == str(os.getpid())
        assert refused.value.code == "already_running"
    with single_instance(tmp_path):  # released at the end of the block
        pass


def test_the_lock_goes_away_with_a_killed_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from agent.instance import single_instance\n"
            "with single_instance(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning) as refused, single_instance(tmp_path):
            pass
        assert refused.value.pid == str(holder.pid)
    finally:
        holder.kill()  # no clean-up runs: the OS releases the lock
        holder.wait(10)
    with single_instance(tmp_path):
        pass
