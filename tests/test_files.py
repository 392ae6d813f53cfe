"""Crash-safe writes (bertkit/files.py): a kill at any step leaves the old or the new directory, complete, where
it belongs; staging leftovers are cleaned by the next write; everything follows the umask."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from bertkit import files
from bertkit.files import atomic_directory, atomic_file, recover

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import crash  # noqa: E402

OLD = {"config.json": "old config", "model.bin": "old weights", "notes.txt": "the user's",
       "checkpoint-last/trainer_state.pt": "old state", "checkpoint-last/model/config.json": "old"}
NEW = {"config.json": "new config", "model.safetensors": "new weights"}
# What a save keeps of the old directory: everything but the stale weight file, whose name the new one replaces.
SAVED = {**{k: v for k, v in OLD.items() if k != "model.bin"}, **NEW}


def tree(root: Path) -> dict[str, str] | None:
    if not root.is_dir():
        return None
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, contents: dict[str, str]) -> None:
    for name, text in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def save(target: Path) -> None:
    with atomic_directory(target, keep_old=lambda name: name != "model.bin") as staging:
        write_tree(staging, NEW)


@pytest.fixture
def no_exchange(request, monkeypatch):
    """Both swaps: the atomic exchange, and the two renames of filesystems without one."""
    if request.param:
        monkeypatch.setattr(files, "exchange", lambda a, b: False)
    return request.param


@pytest.mark.parametrize("no_exchange", [False, True], indirect=True, ids=["exchange", "two-renames"])
def test_a_kill_at_any_step_of_a_save_leaves_the_old_or_the_new_directory(tmp_path: Path, no_exchange: bool) -> None:
    target = tmp_path / "out" / "model"
    write_tree(target, OLD)
    steps = crash.steps(lambda: save(target), tmp_path / "steps.log", armed=True, counted=crash.TREE_STEPS)
    assert tree(target) == SAVED and not crash.leftovers(target.parent)
    assert any(s.startswith("exchange" if not no_exchange else "replace") for s in steps), steps
    for k in range(len(steps) + 1):
        os.system(f"rm -rf {target.parent}")
        write_tree(target, OLD)
        assert crash.run(lambda: save(target), kill_after=k, armed=True, counted=crash.TREE_STEPS) == crash.KILLED
        after = f"killed after step {k} of {len(steps)} ({steps[k - 1] if k else 'before the first'})"
        if no_exchange:
            recover(target)  # what the next write (or a resume) does first
        # Where the user looks there is a complete directory, old or new, with the user's file and the resume point.
        assert tree(target) in (OLD, SAVED), after
        save(target)  # the next save succeeds and cleans up what the killed one left
        assert tree(target) == SAVED, after
        assert crash.leftovers(target.parent) == [], after


def test_a_live_process_keeps_its_staging_and_a_dead_one_loses_it(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    dead = tmp_path / f".model.tmp-{2**22 + 7}-abc123"  # no such process
    alive = tmp_path / f".model.tmp-{os.getppid()}-abc123"
    other = tmp_path / ".other.tmp-1-abc123"  # another target's
    for path in (dead, alive, other):
        path.mkdir()
    recover(target)
    assert not dead.exists() and alive.exists() and other.exists()


def test_files_and_directories_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with atomic_directory(tmp_path / "dir") as staging:
            (staging / "f.txt").write_text("x")
        with atomic_file(tmp_path / "file.npy") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "dir") == 0o750  # mkdtemp made it 0o700
    assert mode(tmp_path / "dir" / "f.txt") == 0o640
    assert mode(tmp_path / "file.npy") == 0o640  # mkstemp made it 0o600


def test_unwritable_output_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"{blocker}/out: cannot create the output directory: {blocker} is a file"):
        files.check_writable(blocker / "out")
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        with pytest.raises(PermissionError, match=f"{locked}/run: the output directory is not writable \\({locked}, where"):
            files.check_writable(locked / "run")
    files.check_writable(locked / "run")  # writable again: no error, nothing left behind
    assert list(locked.iterdir()) == []


class read_only:
    """A directory nobody may write into, root included (chattr +i as root, else chmod)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        if os.geteuid() == 0:
            if os.system(f"chattr +i {self.path} 2>/dev/null") != 0:
                pytest.skip("running as root without chattr: cannot make a directory read-only")
        else:
            self.path.chmod(0o555)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if os.geteuid() == 0:
            os.system(f"chattr -i {self.path}")
        else:
            self.path.chmod(0o755)
