"""perlkit.files: atomic writes that never leave half a file or a temp file, and name the path when they fail."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from perlkit.files import StoreError, atomic_write_bytes, atomic_write_json, ensure_writable, inside_repo_data


def test_atomic_write_leaves_no_temp_files(tmp_path) -> None:
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    atomic_write_json(tmp_path / "r.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert (tmp_path / "r.json").read_text().strip().endswith("}")


def test_disk_full_names_the_path_keeps_the_old_file_and_removes_the_temp(tmp_path) -> None:
    """RLIMIT_FSIZE in a child process stands in for a full disk (EFBIG instead of ENOSPC, same code path)."""
    target = tmp_path / "result.json"
    target.write_text('{"old": true}\n')
    code = (
        "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000));"
        "from perlkit.files import atomic_write_bytes;"
        f"atomic_write_bytes({str(target)!r}, b'x' * 100000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "StoreError" in out.stderr and str(target) in out.stderr
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert resource.getrlimit(resource.RLIMIT_FSIZE) != (1000, 1000)  # the limit stayed in the child


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions; see the read-only mount test")
def test_ensure_writable_refuses_a_read_only_folder(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=str(folder)):
            ensure_writable(folder)
        with pytest.raises(StoreError, match="could not write"):
            atomic_write_bytes(folder / "x.json", b"{}")
    finally:
        folder.chmod(0o700)


def test_inside_repo_data(tmp_path) -> None:
    from perlkit.files import REPO_DATA

    assert inside_repo_data(REPO_DATA / "results" / "mini")
    assert not inside_repo_data(tmp_path)
