"""Crash-safe writing: a directory or file is, at every instant, either its old complete self or its new one.

`atomic_directory(target)` builds the new contents in a staging directory next to the target, copies in (as
hard links, so without cost) the old entries it keeps, and then swaps the two directories in one atomic
`renameat2(RENAME_EXCHANGE)`. A process killed at any step therefore leaves `target` complete, old or new;
what it leaves besides is a staging directory named `.TARGET.tmp-PID-TOKEN` (or `.TARGET.old-PID-TOKEN`),
which the next write of the same target removes once process PID is gone. Where the filesystem cannot
exchange (not Linux, or a filesystem without the call), the swap is two renames, and a crash between them is
repaired by the next write or `recover(target)`: the complete new directory is renamed into place.

Everything created here follows the process's umask, as files written by hand do.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

logger = logging.getLogger("bertkit")

# `.NAME.tmp-PID-TOKEN`: new contents being written; `.NAME.old-PID-TOKEN`: old contents set aside (two-rename swap).
_STAGING = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)")
_OWN_TOKENS: set[str] = set()  # this process's live stagings (a pid can be reused by a later process)


def _staging_path(target: Path, kind: str, token: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{token}"


def _new_token() -> str:
    token = secrets.token_hex(6)
    _OWN_TOKENS.add(token)
    return token


def _alive(pid: int, token: str) -> bool:
    if pid == os.getpid():
        return token in _OWN_TOKENS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


# --- the atomic exchange of two paths ---

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system or filesystem cannot (nothing changed)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}")


# --- helpers ---

def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        if path.is_file() or path.is_dir():
            _fsync(path)


def _umask() -> int:
    """The process's umask (read, not changed, where /proc tells it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _follow_umask(root: Path) -> None:
    """Give what a writer created under `root` the modes the umask asks for: some writers use modes of their
    own (safetensors writes 0600 files), and a model directory is meant to be shared like any other file."""
    mask = _umask()
    for path in [*root.rglob("*"), root]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o777 & ~mask)
        else:
            executable = path.stat().st_mode & 0o111
            path.chmod((0o666 | (0o111 if executable else 0)) & ~mask)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def link_tree(source: Path, destination: Path) -> None:
    """`destination` as a copy of `source` made of hard links (copies where the filesystem has none):
    both names then lead to the same files, and removing one leaves the other whole."""
    if source.is_dir() and not source.is_symlink():
        os.mkdir(destination)
        shutil.copystat(source, destination)
        for entry in source.iterdir():
            link_tree(entry, destination / entry.name)
        return
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        shutil.copy2(source, destination, follow_symlinks=False)


def recover(target: str | os.PathLike) -> None:
    """Repair what a killed write of `target` left: finish a two-rename swap it stopped in the middle of
    (the new directory is complete by then), and remove its staging directories. Stagings of live
    processes are left alone."""
    target = Path(target).absolute()
    if not target.parent.is_dir():
        return
    stale: dict[str, dict[str, Path]] = {}
    for entry in target.parent.iterdir():
        match = _STAGING.fullmatch(entry.name)
        if match and match["name"] == target.name and not _alive(int(match["pid"]), match["token"]):
            stale.setdefault(match["token"], {})[match["kind"]] = entry
    for kinds in stale.values():
        if not os.path.lexists(target) and "old" in kinds:
            # Killed between the two renames: "tmp" (complete, flushed) was about to replace "old".
            restored = kinds.pop("tmp", None) or kinds.pop("old")
            os.replace(restored, target)
            logger.warning("%s: restored after an interrupted save", target)
        for path in kinds.values():
            _remove(path)


# --- the writers ---

@contextmanager
def atomic_directory(target: str | os.PathLike, keep_old: Callable[[str], bool] = lambda name: True) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target` in one atomic exchange.

    Old entries the new contents do not provide are kept if `keep_old(name)` says so (a user's other files
    in a model directory survive a save, and so does a run's checkpoint-last/): they are hard-linked into the
    staging directory before the swap, so they are in `target` at every instant. If the body raises, the
    target is left untouched; the old directory is deleted once the new one is in place.
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    token = _new_token()
    staging = _staging_path(target, "tmp", token)
    os.mkdir(staging)
    try:
        yield staging
        _follow_umask(staging)
        if target.exists():
            for entry in target.iterdir():
                if keep_old(entry.name) and not os.path.lexists(staging / entry.name):
                    link_tree(entry, staging / entry.name)
        _fsync_tree(staging)
        _swap_in(staging, target, token)
    finally:
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)
        _OWN_TOKENS.discard(token)


def _swap_in(staging: Path, target: Path, token: str) -> None:
    """Put the complete `staging` at `target`; the old contents, if any, are deleted once it is there."""
    old: Path | None = None
    if not target.exists():
        os.replace(staging, target)
    elif exchange(staging, target):
        old = staging  # it holds the old contents now
    else:  # no atomic exchange here: two renames, which `recover` completes if a crash falls between them
        old = _staging_path(target, "old", token)
        os.replace(target, old)
        os.replace(staging, target)
    _fsync(target.parent)
    if old is not None:
        shutil.rmtree(old)


@contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target` in one rename."""
    target = Path(target).absolute()
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory; expected a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    token = _new_token()
    staging = _staging_path(target, "tmp", token)
    os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # 0o666 less the umask
    try:
        yield staging
        _fsync(staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
        _OWN_TOKENS.discard(token)


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Fail now, with the path, if `path` cannot be created or written into: the nearest existing directory on
    the way must take a new entry (tried for real: permission bits do not tell about read-only mounts)."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{path}: cannot create the {what} directory: {existing} is a file")
    probe = existing / f".bertkit-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(probe)
    except OSError as e:
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise PermissionError(f"{path}: the {what} directory is not writable{where}: {e.strerror}") from None
    os.rmdir(probe)
