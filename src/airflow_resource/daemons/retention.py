"""Log retention: remove task logs, DAG-processor logs and delivered alerts older than N days.

Run by the housekeeper component at its start and then every CLEANUP_INTERVAL_S (and callable on its
own). Age is the file's modification time, i.e. its last write: a long task's log is as old as its last
line. Folders left empty are removed too, deepest first; the roots themselves stay. Symbolic links
(the DAG processor's `latest`) are never followed or removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CLEANUP_INTERVAL_S = 3600
DAY_S = 86400


@dataclass
class Report:
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"removed {self.files} file(s) ({self.bytes / 1e6:.1f} MB) and {self.dirs} empty folder(s)"
        return text + (f"; {len(self.errors)} error(s), first: {self.errors[0]}" if self.errors else "")


def clean(roots: list[Path], days: int, now: float | None = None) -> Report:
    """Remove files last written more than `days` days ago under each root, then the folders left empty."""
    report = Report()
    if days <= 0:
        return report
    cutoff = (time.time() if now is None else now) - days * DAY_S
    for root in roots:
        if root.is_dir() and not root.is_symlink():
            _clean_root(root, cutoff, report)
    return report


def _clean_root(root: Path, cutoff: float, report: Report) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        emptied = False
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if os.path.islink(path) or st.st_mtime >= cutoff:
                    continue
                os.unlink(path)
                report.files += 1
                report.bytes += st.st_size
                emptied = True
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.errors.append(f"{path}: {exc.strerror}")
        if dirpath == str(root):
            continue
        try:
            # A folder goes when it is empty and either this pass emptied it or it is itself old:
            # a folder a task created a moment ago for its first line is neither.
            if not os.listdir(dirpath) and (emptied or os.lstat(dirpath).st_mtime < cutoff
                                            or _had_subdirs_removed(dirnames, dirpath)):
                os.rmdir(dirpath)
                report.dirs += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno not in (39,):  # ENOTEMPTY: something was written meanwhile, keep it
                report.errors.append(f"{dirpath}: {exc.strerror}")


def _had_subdirs_removed(dirnames: list[str], dirpath: str) -> bool:
    """True when the walk listed sub-folders here that are gone now (this pass removed them)."""
    return bool(dirnames) and not any(os.path.lexists(os.path.join(dirpath, d)) for d in dirnames)
