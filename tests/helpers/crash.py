"""Kill a process at each filesystem step of a save: fork, count the steps, `os._exit` right after step k.

A step is a call of one of STEPS (directory creation, links and copies, renames, the atomic exchange, tree
removal, unlinks). `os._exit` skips every `finally` and `with` exit, as a SIGKILL or a power cut would, so what
the disk holds afterwards is exactly what a crash at that moment leaves. Steps are counted only once the child
calls `arm()` (e.g. from an evaluation callback), so a test can aim at one save of a long run.
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path
from typing import Callable

from bertkit import files

KILLED = 137  # the exit status of a killed child
# Steps that change what is on disk where a reader looks; TREE_STEPS add those inside a tree removal.
STEPS = [(os, "mkdir"), (os, "link"), (os, "replace"), (os, "rename"), (shutil, "rmtree"), (shutil, "copy2"),
         (files, "exchange")]
TREE_STEPS = STEPS + [(os, "unlink"), (os, "rmdir")]

_state = {"armed": False, "count": 0, "kill_after": None, "log": None}


def arm() -> None:
    """Start counting steps (in the child); kill_after=0 dies here, before the first."""
    _state["armed"] = True
    if _state["kill_after"] == 0:
        os._exit(KILLED)


def disarm() -> None:
    """Stop counting steps: the kill, if still due, never comes (the test aims at the steps in between)."""
    _state["armed"] = False


def _counted(module: object, name: str, real: Callable) -> Callable:
    def step(*args, **kwargs):
        result = real(*args, **kwargs)
        if _state["armed"]:
            _state["count"] += 1
            if _state["log"] is not None:
                with open(_state["log"], "a", encoding="utf-8") as f:
                    f.write(f"{name} {' '.join(str(a) for a in args)}\n")
            if _state["count"] == _state["kill_after"]:
                os._exit(KILLED)
        return result

    return step


def run(body: Callable[[], None], kill_after: int | None = None, log: Path | None = None,
        armed: bool = False, counted: list = STEPS) -> int:
    """Run `body` in a forked child; its exit status (0 if it returned, KILLED if killed, 1 if it raised).
    With `kill_after`, the child dies right after that many `counted` steps; `log` receives one line per step."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller (pytest)
        status = 1
        try:
            _state.update(armed=False, count=0, kill_after=kill_after, log=log)
            for module, name in counted:
                setattr(module, name, _counted(module, name, getattr(module, name)))
            if armed:
                arm()
            body()
            status = 0
        except BaseException:  # noqa: BLE001  (reported through the exit status and stderr)
            traceback.print_exc()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def steps(body: Callable[[], None], log: Path, armed: bool = False, counted: list = STEPS) -> list[str]:
    """The steps `body` takes once armed, by a run that is not killed (which must succeed)."""
    log.unlink(missing_ok=True)
    assert run(body, log=log, armed=armed, counted=counted) == 0, "the uninterrupted run failed"
    return log.read_text(encoding="utf-8").splitlines() if log.is_file() else []


def leftovers(*directories: Path) -> list[str]:
    """Staging names (.NAME.tmp-* / .NAME.old-*) left in these directories."""
    found = []
    for directory in directories:
        if directory.is_dir():
            found += [str(p) for p in directory.iterdir() if files._STAGING.fullmatch(p.name)]
    return found
