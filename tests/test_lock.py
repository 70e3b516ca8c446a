"""The one-job-per-organisation lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bulkruns.api import server_key
from bulkruns.cli.lock import JobLock, LockBusy, lock_path, state_dir
from bulkruns.errors import ConfigError

URL = "https://go.tallyfy.com/api"


def test_state_dir_follows_xdg_and_ignores_a_relative_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == tmp_path / "bulkruns"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert state_dir() == Path.home() / ".local" / "state" / "bulkruns"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == Path.home() / ".local" / "state" / "bulkruns"


def test_one_lock_file_per_org_and_server(tmp_path: Path) -> None:
    a = lock_path("org-1", URL, tmp_path)
    assert a.parent == tmp_path
    assert a.name.startswith("org-1-")
    assert a.name.endswith(".lock")
    assert lock_path("org-1", URL, tmp_path) == a
    assert lock_path("org-2", URL, tmp_path) != a
    assert lock_path("org-1", "http://127.0.0.1:8765/api", tmp_path) != a
    # an org ID cannot climb out of the directory
    assert lock_path("../../etc", URL, tmp_path).parent == tmp_path


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    first = JobLock("org-1", URL, command="archive", directory=tmp_path)
    with first:
        assert first.held
        second = JobLock("org-1", URL, directory=tmp_path)
        with pytest.raises(LockBusy, match=rf"organisation 'org-1' .* \(pid {os.getpid()},"):
            second.acquire()
        assert not second.held
        # another organisation, or the same one on another server, is free
        with JobLock("org-2", URL, directory=tmp_path):
            pass
        with JobLock("org-1", "http://127.0.0.1:1/api", directory=tmp_path):
            pass
    assert not first.held
    with JobLock("org-1", URL, directory=tmp_path):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from bulkruns.cli.lock import JobLock
        lock = JobLock("org-1", {URL!r}, directory=Path({str(tmp_path)!r}))
        lock.acquire()
        print("held", flush=True)
        time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {holder.pid}"):
            JobLock("org-1", URL, directory=tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert lock_path("org-1", URL, tmp_path).exists()  # the file stays, harmlessly
        with JobLock("org-1", URL, directory=tmp_path):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_an_unusable_state_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create the job lock"):
        JobLock("org-1", URL, directory=blocker / "bulkruns").acquire()


@pytest.mark.parametrize(
    "spelling",
    [
        "https://api.tallyfy.com",
        "https://API.tallyfy.com/",
        "https://api.tallyfy.com:443",
        "https://go.tallyfy.com",
        "https://go.tallyfy.com/api/",
    ],
)
def test_the_spellings_of_tallyfys_api_are_one_server(spelling: str, tmp_path: Path) -> None:
    assert server_key(spelling) == URL
    assert lock_path("org-1", spelling, tmp_path) == lock_path("org-1", URL, tmp_path)
    with JobLock("org-1", URL, directory=tmp_path), pytest.raises(LockBusy):
        JobLock("org-1", spelling, directory=tmp_path).acquire()


def test_other_servers_keep_their_own_key() -> None:
    assert server_key("http://127.0.0.1:8765/api/") == "http://127.0.0.1:8765/api"
    assert server_key("http://localhost:80/api") == "http://localhost/api"
    assert server_key("https://tallyfy.example.com/api") == "https://tallyfy.example.com/api"
    with pytest.raises(ConfigError):
        server_key("ftp://example.com")
