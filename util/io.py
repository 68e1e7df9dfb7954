"""Atomic file writes (temp file in the same folder + os.replace): a crash never leaves half a file.

A process killed in the middle of a write leaves its hidden temp file (`.<name>.<pid>-XXXX.tmp`) behind;
`remove_stale_temps` removes those whose writer is gone. `read_json` says which file is damaged.
`load_paddle` is the one reader of checkpoints (.pdparams/.pdstate/.pdopt): an allow-list unpickler that
builds tensors and plain data only, so a checkpoint from elsewhere never runs code. `FolderLock` keeps one
writer per folder.
"""
from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import pickle
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


class CheckpointError(DamagedFile):
    """A checkpoint that is damaged, or that holds anything but tensors and plain data (refused, nothing run);
    the message is one line naming the file, `why` the reason alone."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path} is not a readable checkpoint ({why})")
        self.why = why


def _ordinary_mode(path: str, mode: int) -> None:
    """chmod `path` to `mode` less the umask, as open() and mkdir() would have made it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to `path`; on success it replaces `path` in one step."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}-", suffix=".tmp", dir=folder)
    os.close(fd)
    _ordinary_mode(tmp, 0o666)  # mkstemp makes 0600; the final file gets ordinary permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # numpy's "N requested and M written" (a full disk) names no file: name it
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from None
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


class Refused(pickle.UnpicklingError):
    """SafeUnpickler met something that is not plain data; nothing of it was called."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only what ALLOWED names, so loading never runs code: every other global
    (os.system, eval, any class) is refused before it is called. This class allows what paddle.save
    writes for tensors and plain data: containers, `(name, ndarray)` tuples and numpy arrays and
    scalars of non-object dtypes; a format with other needs gives its own table (models/pretrained.py)."""

    ALLOWED: dict = {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise Refused(f"refused global {module}.{name}: tensors and plain data never need it")

    def persistent_load(self, pid):
        raise Refused("refused a persistent id: tensors and plain data never need one")


def _plain_dtype(*args):
    import numpy as np

    d = np.dtype(*args)
    if d.hasobject:
        raise Refused("refused a numpy array of Python objects")
    return d


_NDARRAY = "numpy.ndarray"  # a marker, not the class: the one thing numpy's _reconstruct may be given


def _empty_array(cls, shape, dtype):
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array that the next BUILD fills (ndarray.__setstate__)."""
    import numpy as np

    if cls is not _NDARRAY:
        raise Refused("refused an array type other than numpy.ndarray")
    return np.empty(0, np.uint8)


def _scalar(dtype, data):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise Refused("refused a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype, count=1)[0]


SafeUnpickler.ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "tuple"): tuple,
                         ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _plain_dtype,
                         **{(m, "_reconstruct"): _empty_array for m in ("numpy._core.multiarray", "numpy.core.multiarray")},
                         **{(m, "scalar"): _scalar for m in ("numpy._core.multiarray", "numpy.core.multiarray")}}
STRUCTURED = "StructuredToParameterName@@"  # paddle.save's table of a state dict's parameter names
UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
              MemoryError, OverflowError, RecursionError)  # what a damaged or hostile pickle makes the unpickler raise


def load_paddle(path: str, data: bytes | None = None):
    """What paddle.load(path) returns for a checkpoint paddle.save wrote (`data`: the file's bytes, already read),
    built by SafeUnpickler and turned into tensors as paddle.load does: a state dict's arrays named in its
    parameter-name table, else `(name, ndarray)` pairs, else every array. CheckpointError (one line naming
    `path`) for a damaged file or one that holds anything else."""
    import io

    import numpy as np
    import paddle

    try:
        with (io.BytesIO(data) if data is not None else open(path, "rb")) as f:
            obj = SafeUnpickler(f, encoding="latin1").load()  # as paddle.load reads
    except Refused as e:
        raise CheckpointError(path, f"{e}; nothing in it was run") from None
    except UNREADABLE as e:
        raise CheckpointError(path, f"damaged: {type(e).__name__}") from None

    def tensor(a, name=None):
        t = paddle.to_tensor(a)
        if name:
            t.name = name
        return t

    names = obj.pop(STRUCTURED, None) if isinstance(obj, dict) else None
    if isinstance(names, dict):  # a state dict as paddle.save writes one: arrays, and their parameter names
        for k, name in names.items():
            if isinstance(obj.get(k), np.ndarray):
                obj[k] = tensor(obj[k], name)
        return obj

    def pair(o):
        return type(o) is tuple and len(o) == 2 and isinstance(o[0], str) and isinstance(o[1], np.ndarray)

    def has_pair(o):
        return pair(o) or (isinstance(o, (list, tuple)) and any(map(has_pair, o))) or \
            (isinstance(o, dict) and any(map(has_pair, o.values())))

    named = has_pair(obj)

    def tensors(o):
        if pair(o):
            return tensor(o[1], o[0])
        if isinstance(o, np.ndarray):
            return o if named else tensor(o)
        if isinstance(o, dict):
            for k in o:
                o[k] = tensors(o[k])
            return o
        return [tensors(v) for v in o] if type(o) is list else tuple(map(tensors, o)) if type(o) is tuple else o

    return tensors(obj)


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


class Busy(RuntimeError):
    """Another live process holds a folder's lock; the message names its pid."""


class FolderLock:
    """One writer per folder: an exclusive flock on `<folder>/.lock`, taken at once or refused (Busy, one line
    naming the holder's pid and `advice`). The kernel drops a flock when its holder ends, however it ends, so a
    crashed writer never leaves a lock that blocks; the pid in the file is only for the message."""

    NAME = ".lock"

    def __init__(self, folder: str, advice: str):
        os.makedirs(folder, exist_ok=True)
        self.fd = os.open(os.path.join(folder, self.NAME), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise Busy(f"{folder} is being written by process {holder}; {advice}") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def within(path: str, folder: str) -> bool:
    """Whether `path` resolves (links followed) to a place inside `folder` (resolved too)."""
    real = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), real]) == real


def temp_dir(folder: str, prefix: str = "tmp") -> str:
    """A new hidden working folder `.<prefix>-<pid>-XXXX` in `folder` (prefix: 'tmp' or 'frozen'), unique to this
    process, which `remove_stale_temps` removes once this process is gone."""
    os.makedirs(folder, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f".{prefix}-{os.getpid()}-", dir=folder)
    _ordinary_mode(path, 0o777)  # mkdtemp makes 0700; a folder renamed into place gets ordinary permissions
    return path


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
