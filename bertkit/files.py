"""Crash-safe writing: a directory appears complete or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        if path.is_file() or path.is_dir():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextmanager
def atomic_directory(target: str | os.PathLike, keep_old: Callable[[str], bool] = lambda name: True) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target` in one rename.

    The staging directory sits next to the target (same filesystem, so each rename is atomic) and
    is flushed to disk before it is renamed. If the body raises, the target is left untouched.
    When the target already exists, the old directory is moved aside, the new one renamed into
    place, and then the old entries the new contents do not provide are moved over if
    `keep_old(name)` says so (a user's other files in a model directory survive a save). The old
    directory is deleted last, so no crash loses both versions.
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        _fsync_tree(staging)
        if not target.exists():
            os.replace(staging, target)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, aside / target.name)
        os.replace(staging, target)
        for entry in (aside / target.name).iterdir():
            if keep_old(entry.name) and not (target / entry.name).exists():
                os.replace(entry, target / entry.name)
        shutil.rmtree(aside)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target` in one rename."""
    target = Path(target).absolute()
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory; expected a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
