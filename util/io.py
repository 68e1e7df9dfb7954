"""Atomic file writes (temp file in the same folder + os.replace): a crash never leaves half a file.

A process killed in the middle of a write leaves its hidden temp file (`.<name>.<pid>-XXXX.tmp`) behind;
`remove_stale_temps` removes those whose writer is gone. `read_json` says which file is damaged.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager

# .<name>.<pid>-<random>.tmp (files, atomic_path) or .<prefix>-<pid>-<random> (folders, temp_dir);
# temp files of older versions had no pid (.<name>.<random>.tmp)
_TEMP = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[^.]+\.tmp$")
_TEMP_DIR = re.compile(r"^\.(?:frozen|tmp)-(?P<pid>\d+)-[^.]+$")
LEGACY_STALE_S = 3600  # a temp file without a pid counts as stale once it is an hour old


class DamagedFile(ValueError):
    """A file that exists but cannot be read as what it should be; the message names it."""


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to `path`; on success it replaces `path` in one step."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}-", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets ordinary permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def save_paddle(obj, path: str) -> None:
    """paddle.save, atomically."""
    import paddle

    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)


def savefig(fig, path: str, **kw) -> None:
    """matplotlib Figure.savefig, atomically (format taken from the final name)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=os.path.splitext(path)[1][1:] or "png", **kw)


def read_json(path: str, default=None):
    """The JSON in `path`, or `default` when there is no such file; DamagedFile when it is not UTF-8 JSON."""
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        why = "empty" if os.path.getsize(path) == 0 else f"not JSON: {str(e).splitlines()[0][:80]}"
        raise DamagedFile(f"{path} is unreadable ({why})") from None


def temp_dir(folder: str, prefix: str = "tmp") -> str:
    """A new hidden working folder `.<prefix>-<pid>-XXXX` in `folder` (prefix: 'tmp' or 'frozen'), which
    `remove_stale_temps` removes once this process is gone."""
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{prefix}-{os.getpid()}-", dir=folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: str, depth: int = 4) -> int:
    """Remove the temp files and folders that killed writers left under `folder` (at most `depth` levels
    down): those whose writing process no longer runs (older ones without a pid: once an hour old).
    Returns how many were removed. Live writers' temp files are left alone."""
    if not os.path.isdir(folder):
        return 0
    removed, base = 0, folder.rstrip(os.sep).count(os.sep)
    for top, dirs, files in os.walk(folder):
        if top.count(os.sep) - base >= depth:
            dirs[:] = []
        for name in list(dirs) + files:
            m = _TEMP.match(name) if name in files else _TEMP_DIR.match(name)
            if not m:
                continue
            path = os.path.join(top, name)
            if m["pid"] is not None:
                stale = not _alive(int(m["pid"]))
            else:
                stale = time.time() - os.lstat(path).st_mtime > LEGACY_STALE_S
            if not stale:
                continue
            if name in files:
                os.remove(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
            removed += 1
    return removed


def sha256(path: str) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
