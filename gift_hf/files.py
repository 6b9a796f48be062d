"""Files and paths: atomic writes (a reader or a killed process never sees half a file), an atomic
directory swap, the check that tells a missing local path from a Hub id, and :func:`write_output`: the one
writer of results, plots, cards and caches, which never replaces a file gift_hf did not write."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "check_local_path",
    "exchange_directories",
    "process_alive",
    "MANIFEST",
    "DiskFullError",
    "NotOwnedError",
    "allow_overwrite",
    "check_outputs",
    "check_saved_files",
    "owned_by_gift_hf",
    "overwriting",
    "write_output",
    "write_output_text",
]

#: The manifest of the files gift_hf wrote in a folder (kept in that folder): see write_output.
MANIFEST = "_gift_hf_files.json"

_OVERWRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("gift_hf_overwrite", default=False)


class NotOwnedError(FileExistsError):
    """An output file exists that gift_hf did not write (or that changed since): not replaced."""


class DiskFullError(OSError):
    """The disk filled up while a file was written; the message names the file and the space needed."""


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], size_hint: int | None = None) -> str:
    """Call ``write(tmp)`` on a temp file next to ``path``, then rename it to ``path``.

    The rename is atomic on one file system: ``path`` holds the old content or the whole new
    one. A failure (or an exception from ``write``) removes the temp file and re-raises; a
    full disk raises :class:`DiskFullError` naming ``path``, the free space and the space
    needed (``size_hint`` bytes when the caller knows it). Returns ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if os.path.exists(tmp):
            os.remove(tmp)
        if (
            isinstance(err, OSError)
            and not isinstance(err, DiskFullError)
            and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        ):
            free = shutil.disk_usage(folder).free
            needed = f"about {_mib(size_hint)}" if size_hint else f"more than the {_mib(written)} written"
            raise DiskFullError(
                err.errno,
                f"no space left on the device writing {path}: {_mib(free)} free in "
                f"{folder}, {needed} needed; free some space or write elsewhere",
            ) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def process_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists: a folder it owns is then a leftover."""
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its folders alone
    return True


def exchange_directories(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot do it.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


#: Files of a saved model or checkpoint that are read back, and how each is checked.
SAVED_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")


def check_saved_files(folder: str | os.PathLike, what: str = "checkpoint") -> None:
    """Read every weights/state file of a saved model or checkpoint ``folder`` once, and raise
    a ``ValueError`` naming the first corrupt or truncated one and what to do, instead of the
    deserialiser's message without a file name (safetensors' "incomplete metadata", torch's
    "PytorchStreamReader failed …"). ``*.safetensors`` are opened (header and every tensor),
    ``*.pt``/``*.pth``/``*.bin`` loaded with ``weights_only=True``."""
    folder = os.fspath(folder)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(path, framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)
            elif name in SAVED_FILES or name.endswith((".pt", ".pth")):
                import torch

                try:
                    torch.load(path, map_location="cpu", weights_only=True)
                except Exception as err:
                    if "weights_only" in str(err) or "Unsupported global" in str(err):
                        continue  # readable, but holds objects weights_only refuses: not corruption
                    raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            fix = (
                f"delete the folder {folder} and resume from an earlier checkpoint"
                if what == "checkpoint"
                else f"save or download the {what} again"
            )
            raise ValueError(
                f"{what} file {path} is corrupt or truncated ({type(err).__name__}: {first}); {fix}"
            ) from None


def check_local_path(path: str | os.PathLike, what: str) -> str:
    """``path`` as a string, after refusing one that is clearly local but does not exist.

    A name that may be a Hub id (``name`` or ``namespace/name``) is let through; anything
    absolute, starting with ``.`` or ``~``, with more than one ``/``, with a character no Hub
    id has (``[``, a space …) or whose first folder exists here is a local path, and a
    missing one is a ``FileNotFoundError`` saying "not found" (never a Hub or network error).
    ``what`` names it in the message (``"teacher"``, ``"dataset"``, ``"student"``).
    """
    target = os.fspath(path)
    if os.path.lexists(target):
        return target
    first = target.split("/", 1)[0]
    local = (
        os.path.isabs(target)
        or target.startswith((".", "~"))
        or target.count("/") > 1
        or target.endswith("/")
        or (os.sep != "/" and os.sep in target)
        # a character no Hub id has (`data[a]`, spaces), or a first folder that exists here
        or not re.fullmatch(r"[\w.:\-]+(/[\w.\-]+)?", target)
        or ("/" in target and os.path.isdir(first))
    )
    if local:
        raise FileNotFoundError(
            f"{what} {target!r} not found: no such local file or directory; expected an existing "
            "local path (or a Hub id 'namespace/name')"
        )
    return target


# ------------------------------------------------------------------ owned outputs
def allow_overwrite(enabled: bool) -> None:
    """Let :func:`write_output` replace files gift_hf did not write, from now on in this context
    (the parser calls it with the command's ``--overwrite_output_dir``)."""
    _OVERWRITE.set(bool(enabled))


@contextlib.contextmanager
def overwriting(enabled: bool = True) -> Iterator[None]:
    """Within this block :func:`write_output` may replace files gift_hf did not write
    (``--overwrite_output_dir``)."""
    token = _OVERWRITE.set(bool(enabled))
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    # The processes of one launch write cells into one folder: one manifest update at a time.
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; each manifest write is still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)  # lock the folder itself: no lock file left beside the outputs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_manifest(folder: str) -> dict[str, list[int]]:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):  # none yet, or unreadable: gift_hf owns nothing there
        return {}
    return entries if isinstance(entries, dict) else {}


def _signature(path: str) -> list[int]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def owned_by_gift_hf(path: str | os.PathLike) -> bool:
    """Whether ``path`` was written by :func:`write_output` and has not changed since."""
    path = os.path.abspath(os.fspath(path))
    entry = _read_manifest(os.path.dirname(path)).get(os.path.basename(path))
    return entry is not None and os.path.isfile(path) and list(entry) == _signature(path)


def _check_entry(path: str, entry: list[int] | None, overwrite: bool | None) -> None:
    if not os.path.lexists(path) or (_OVERWRITE.get() if overwrite is None else overwrite):
        return
    if entry is None or not os.path.isfile(path) or list(entry) != _signature(path):
        why = "was not written by gift_hf" if entry is None else "was changed since gift_hf wrote it"
        raise NotOwnedError(
            f"{path} already exists and {why}; it was left as it is. Pass --overwrite_output_dir "
            "(overwrite=True) to replace it, or choose another output folder"
        )


def check_outputs(*paths: str | os.PathLike, overwrite: bool | None = None) -> None:
    """Raise :class:`NotOwnedError` now if :func:`write_output` would refuse any of ``paths``:
    a command calls it before its work, so that hours of training never end in a refusal."""
    for path in paths:
        path = os.path.abspath(os.fspath(path))
        _check_entry(path, _read_manifest(os.path.dirname(path)).get(os.path.basename(path)), overwrite)


def write_output(
    path: str | os.PathLike,
    write: Callable[[str], object],
    *,
    overwrite: bool | None = None,
    size_hint: int | None = None,
) -> str:
    """The one writer of results, tables, plots, model cards and caches: :func:`atomic_write`
    that never replaces a file gift_hf did not write.

    Each folder keeps a manifest (``_gift_hf_files.json``: name, size, modification time) of
    the files written here. An existing ``path`` is replaced only when the manifest lists it
    unchanged (gift_hf wrote it, in an earlier run or this one), or when ``overwrite`` is true
    (default: inside :func:`overwriting`, entered for ``--overwrite_output_dir``). Otherwise
    :class:`NotOwnedError` names the file and the way out, and nothing is written.
    Returns ``path``.
    """
    given, path = os.fspath(path), os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    if name == MANIFEST:
        raise ValueError(f"{path}: {name} is gift_hf's manifest of the files it wrote; expected another file name")
    os.makedirs(folder, exist_ok=True)
    with _locked(folder):
        entries = _read_manifest(folder)
        _check_entry(path, entries.get(name), overwrite)
        atomic_write(path, write, size_hint=size_hint)
        entries[name] = _signature(path)
        atomic_write(os.path.join(folder, MANIFEST), lambda tmp: _dump_manifest(tmp, entries))
    return given


def _dump_manifest(tmp: str, entries: dict) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=0, sort_keys=True)


def write_output_text(path: str | os.PathLike, text: str, *, overwrite: bool | None = None) -> str:
    """Write ``text`` to ``path`` with :func:`write_output`."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_output(path, write, overwrite=overwrite)
