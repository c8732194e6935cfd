"""Files and provenance: the one home for atomic writes, checksums, the cache root and "who computed this".

Every part of perlkit that writes a file or records where a number came from goes through here, so that the
guarantees are the same everywhere: a killed process leaves the old file or the new one (never half of one, never a
stray temp file), a write that fails names its path, and nothing is written into the repository's ``data/`` unless
the caller asked for it explicitly (``--ship``).
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import hashlib
import importlib.resources
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import perlkit

PACKAGE_ROOT = Path(perlkit.__file__).resolve().parent
#: the repository's committed data (shipped results, bench files); only ``--ship`` writes here. Absent when perlkit is
#: installed from a wheel: readers treat a missing folder as empty.
REPO_DATA = PACKAGE_ROOT.parent / "data"


def package_path(*parts: str) -> Path:
    """A file shipped inside the package (``perlkit/assets/...``, ``perlkit/configs``), found through
    ``importlib.resources`` so that it is there wherever perlkit is installed (a checkout or a wheel)."""
    resource = importlib.resources.files(perlkit).joinpath(*parts)
    if isinstance(resource, Path):
        return resource
    return _EXTRACTED.enter_context(importlib.resources.as_file(resource))  # a zipped install: a temporary copy


_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def in_checkout() -> bool:
    """Whether this perlkit runs from a source checkout (not an installed wheel): only a checkout has a ``data/``
    that ``--ship`` may write and a git commit that belongs to perlkit."""
    return (PACKAGE_ROOT.parent / "pyproject.toml").is_file()


def require_checkout(what: str) -> None:
    """Refuse ``--ship`` outside a checkout: an installed perlkit has no repository files to replace."""
    if not in_checkout():
        raise ValueError(f"--ship replaces files of a perlkit checkout ({what}), but this perlkit is installed at "
                         f"{PACKAGE_ROOT}; run it from a clone of the repository, or leave out --ship")


class StoreError(OSError):
    """A file perlkit must write cannot be written (read-only folder, disk full): the path and the way out."""


def cache_root() -> Path:
    """Where perlkit writes by default: ``$PERLKIT_CACHE`` or ``~/.cache/perlkit``."""
    return Path(os.environ.get("PERLKIT_CACHE") or Path.home() / ".cache" / "perlkit")


def inside_repo_data(path: str | os.PathLike) -> bool:
    """Whether a path lies in the repository's committed ``data/`` folder (writes there need ``--ship``)."""
    try:
        Path(path).resolve().relative_to(REPO_DATA.resolve())
        return True
    except ValueError:
        return False


def ensure_writable(folder: str | os.PathLike, what: str = "results") -> Path:
    """Create ``folder`` and prove a file can be written there, before any long work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".perlkit-write-check-"):
            pass
    except OSError as err:
        raise StoreError(
            f"cannot write {what} to {folder}: {err.strerror or err}. Choose a writable folder "
            "(PERLKIT_CACHE=DIR or --out DIR)"
        ) from err
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a file so that a killed process leaves either the old file or the new one, never half of one.

    The bytes go to a unique temp file in the same folder, are flushed and fsynced, then renamed over ``path``.
    Any failure removes the temp file and raises ``StoreError`` naming ``path``.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise StoreError(f"could not write {path}: {err.strerror or err}") from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Atomic JSON write (results, caches, sampled splits, bench records), sorted keys for stable diffs."""
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file: verifies shipped and user-supplied weights, and ties checkpoints to them."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    """The current git commit of the perlkit checkout, or 'unknown' when installed (a wheel under some other
    project's git repository must not record that project's commit)."""
    if not in_checkout():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=PACKAGE_ROOT
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str) -> str:
    """A device as every record names it: the GPU's model, or the CPU's model with the torch thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return f"CPU: {model} ({threads} thread{'s' if threads > 1 else ''})"


def provenance(device: torch.device | str, **extra: Any) -> dict[str, Any]:
    """Who computed a number, where and with what: versions, commit, device, time (plus ``extra`` fields)."""
    import open_clip

    return {
        "perlkit_version": perlkit.__version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "host_cpus": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(paths: list[str | os.PathLike]) -> str:
    """sha256 of what Python code *does*: the syntax trees of ``paths`` without comments, docstrings or layout.

    A result records the fingerprint of the code that computed it, so an edit that can change numbers makes the
    result stale, while a reworded docstring or a reformatted line does not.
    """
    digest = hashlib.sha256()
    for path in sorted({Path(p).resolve() for p in paths}):
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digest.update(f"{path.relative_to(PACKAGE_ROOT).as_posix()}\0".encode())
        digest.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return digest.hexdigest()


def output_root(out: str | None, ship: bool, shipped: Path) -> Path | None:
    """Where a command writes: ``--out``, the repository's ``data/`` with ``--ship``, else None (the user cache).

    Only an explicit ``--ship`` (or an ``--out`` naming it) writes into the repository, so no command overwrites a
    committed file by accident.
    """
    if ship and out:
        raise ValueError("give either --ship (write into the repository's data/) or --out DIR, not both")
    if ship:
        require_checkout(f"data/{shipped.name}")
        return shipped
    return Path(out) if out else None


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def temp_sibling(root: Path, kind: str) -> Path:
    """A build's own temp folder next to root: ``.<name>.<kind>-<host>-<pid>`` (kind: tmp while building, old while
    replacing), so that a later build can tell a dead build's leftovers from a live one's, even on a shared disk.

    Folders perlkit writes whole (the mini world, the smoke data root) are built here and renamed into place."""
    return root.parent / f".{root.name}.{kind}-{_host()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete temp folders that killed builds of root left behind (this host's, whose process is gone); return them.

    Only names of perlkit's own pattern are touched (``.<name>.tmp-<host>-<pid>``, ``.<name>.old-<host>-<pid>`` and
    the older ``.<name>.tmp-<pid>``); a folder of a live process or of another host is left alone.
    """
    pattern = re.compile(rf"^\.{re.escape(root.name)}\.(?:tmp|old)-(?:(?P<host>.+)-)?(?P<pid>\d+)$")
    removed: list[Path] = []
    try:
        siblings = list(root.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        m = pattern.match(path.name)
        if m is None or not path.is_dir() or path.is_symlink():
            continue
        if m["host"] not in (None, _host()):
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
