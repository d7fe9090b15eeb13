"""A policy directory kept in force: re-read when its files change, swapped in only when valid.

A ConfigMap mount changes by swapping a `..data` symlink; `fingerprint` resolves the
directory and stats every file, so the swap is seen as a change. A new set is built completely
before it replaces the old one (one reference assignment: a request sees one set or the other);
a set that fails to build is refused with a log line and `on_reload(False, problems)`, and the
last good one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("kubegate.policy")


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What a policy directory holds now. A ConfigMap mount swaps a `..data` symlink: resolving
    the directory and stat-ing every file sees that swap as a change."""
    real = Path(os.path.realpath(directory))
    out = []
    for path in sorted(real.rglob("*")):
        if path.is_file() and not any(part.startswith("..") for part in path.relative_to(real).parts):
            st = path.stat()
            out.append((str(path.relative_to(real)), st.st_mtime_ns, st.st_size))
    return (str(real), 0, 0), *out


class Watched(Generic[T]):
    def __init__(self, directory: Path, build: Callable[[], T], *, what: str, describe: Callable[[T], str],
                 errors: tuple[type[Exception], ...],
                 on_reload: Callable[[bool, list[str]], None] | None = None) -> None:
        self.directory, self.build, self.what, self.describe = directory, build, what, describe
        self.errors, self.on_reload = errors, on_reload
        self.current: T = build()  # at start a broken set raises: nothing is served without a valid one
        self._seen = fingerprint(directory)
        self.loaded_at = time.time()
        self.refused: list[str] = []  # the problems of the last refused reload, until one is taken

    def reload_if_changed(self) -> bool | None:
        """None: nothing changed; True: a new set is in force; False: the new set was refused."""
        try:
            now = fingerprint(self.directory)
        except OSError as e:
            log.error("cannot read %s directory %s: %s; the loaded policy keeps serving", self.what, self.directory, e)
            return None
        if now == self._seen:
            return None
        self._seen = now
        refusals: tuple[type[Exception], ...] = (*self.errors, ValueError, OSError)
        try:
            candidate = self.build()
        except refusals as e:
            problems = list(getattr(e, "problems", None) or [str(e)])
            log.error("refused the new %s in %s (%d problem(s)); the previous one keeps serving: %s",
                      self.what, self.directory, len(problems), "; ".join(problems[:10]))
            if self.on_reload:
                self.on_reload(False, problems)
            self.refused = problems
            return False
        self.current = candidate
        self.loaded_at = time.time()
        self.refused = []
        log.info("loaded %s from %s (%s)", self.what, self.directory, self.describe(candidate))
        if self.on_reload:
            self.on_reload(True, [])
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
