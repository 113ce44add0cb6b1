"""What a killed run leaves in the dev data folder is cleaned before the wheel sees it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from app_db.devserver import forget_dead_handles, remove_stale_pid_file, serves


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_pid_file_of_an_unrelated_live_process_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{tmp_path}\n")

    assert not serves(os.getpid(), tmp_path)
    remove_stale_pid_file(tmp_path)

    assert not pid_file.exists()


def test_pid_file_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text(f"{dead_pid()}\n")

    remove_stale_pid_file(tmp_path)

    assert not pid_file.exists()


def test_dead_handles_are_forgotten_and_live_ones_kept(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead_pid(), os.getpid()]))

    forget_dead_handles(tmp_path)

    assert json.loads(handles.read_text()) == [os.getpid()]
