"""Where a run's results go: checked before the first image, and locked against a second run.

A deploy run goes unattended over other people's files, so an output that cannot be written, or
that would overwrite an input, is refused before any work; and two runs writing the same results
file would lose each other's results, so the second one is refused while the first is alive.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .images import InputItem

LOCK_SUFFIX = ".lock"  # results.json.lock holds the pid of the run writing results.json


class OutputError(ValueError):
    """An output that cannot be used; the message is one line naming it."""


def _writable_dir(folder: Path, what: str) -> None:
    """Raise unless ``folder`` is, or can be made, a folder we can write into."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder}: exists and is not a folder")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{what} {folder}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {folder}: no permission to write in {existing}")


def check_outputs(out: Path | None, drawings: Path | None, targets: list[Path], items: list[InputItem]) -> None:
    """Refuse, before any image is read: a results path that is a folder or cannot be written, a
    drawings folder that cannot be made, or drawings that would land in an input folder."""
    if out is not None:
        if out.is_dir():
            raise OutputError(f"--out {out}: is a folder; give a file name such as {out / 'results.json'}")
        _writable_dir(out.parent, "--out")
    if drawings is None:
        return
    _writable_dir(drawings, "--save-img")
    folders = {item.path.resolve().parent for item in items}
    inputs = {item.path.resolve() for item in items}
    if drawings.resolve() in folders or any(t.resolve() in inputs for t in targets):
        raise OutputError(f"--save-img {drawings}: is an input folder; the drawings would overwrite or mix with "
                          "the images. Choose another folder")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class OutputLock:
    """``results.json.lock`` with this process's pid, for as long as the run writes ``results.json``.

    A lock whose pid no longer runs (a killed run) is stale and taken over; ``stale`` says so.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out).with_name(Path(out).name + LOCK_SUFFIX)
        self.stale: int | None = None  # pid of the dead run whose lock was taken over

    def __enter__(self) -> "OutputLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if (owner is not None and _alive(owner)) or (owner is None and self._fresh()):
                    raise OutputError(f"--out {self.path.with_suffix('')}: another rmpe-run (pid {owner}) is writing it; "
                                      f"wait for it, or remove {self.path} if that is wrong") from None
                self.stale = owner
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise OutputError(f"--out {self.path.with_suffix('')}: cannot take the lock {self.path}")

    def _fresh(self) -> bool:
        """A lock without a pid yet is being written by a run that has just started."""
        try:
            return time.time() - self.path.stat().st_mtime < 5
        except OSError:
            return False

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc: object) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
