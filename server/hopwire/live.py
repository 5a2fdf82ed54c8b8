"""Live configuration: the master watches the file provider's files and hands a validated new
dynamic configuration to the running workers, which swap their route tables without a restart.

    Watcher   polls the main file and the provider's files (stat, then content), so a change
              is seen within one poll, a file still being written is waited for, and a rename
              (an editor's save, a Kubernetes ConfigMap's symlink swap) is a change like any
    Channel   a pickled Config in the master's private directory and a sequence number in
              shared memory made before fork; every worker's tick compares the number

Polling rather than inotify: the master owns no thread before it forks (a watcher library
runs one), and a poll of a few files every 250 ms costs microseconds (bench/live.py).
"""

from __future__ import annotations

import copyreg
import hashlib
import logging
import mmap
import os
import pickle
import shutil
import struct
import tempfile
import types
from typing import Any

from hopwire.config import Config, ConfigError
from hopwire.config.sources import provider_paths

log = logging.getLogger("hopwire.live")

POLL = 0.25  # seconds between two looks at the files
SEQUENCE = struct.Struct("Q")


def read_only(table: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(table)


def _mappingproxy(m: types.MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (read_only, (dict(m),))


copyreg.pickle(types.MappingProxyType, _mappingproxy)  # the config's read-only tables


class Watcher:
    """Whether the watched files changed, once their content has stayed the same for one
    poll (a half-written file is not read as a config) and ``throttle`` seconds after the
    last change applied.  The ``extra`` files (the Kubernetes providers' snapshots) are
    always replaced whole (rename): a change of theirs is complete when it is seen."""

    def __init__(self, main: str | None, provider: Any, throttle: float = 0.0, extra: Any = ()):
        self.main = main
        self.provider = provider  # providers.file, or None: not watched
        self.extra = list(extra)  # the Kubernetes providers' files
        self.throttle = throttle
        self.files, self.snapshots = self.content()  # what the running config was built from
        self.stats = self.stat_all()
        self.pending: str | None = None  # the files' content seen once, not yet twice
        self.last_applied = -throttle

    def paths(self) -> list[str]:
        dynamic: list[str] = []
        if self.provider is not None:
            try:
                dynamic = provider_paths(self.provider.filename, self.provider.directory)
            except ConfigError:
                pass  # the directory is gone: its files are gone (load says why)
        return [p for p in (self.main, *dynamic) if p]

    def stat_all(self) -> tuple[Any, ...]:
        out: list[tuple[Any, ...]] = []
        for path in (*self.paths(), *self.extra):
            try:
                st = os.stat(path)
                out.append((path, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((path, None))
        return tuple(out)

    @staticmethod
    def digest(paths: list[str]) -> str:
        """A digest of these files, names included."""
        h = hashlib.sha256()
        for path in paths:
            h.update(path.encode() + b"\0")
            try:
                with open(path, "rb") as fh:
                    h.update(fh.read())
            except OSError as exc:
                h.update(f"unreadable {exc.errno}".encode())
            h.update(b"\0")
        return h.hexdigest()

    def content(self) -> tuple[str, str]:
        """The digests of the configuration files and of the snapshots."""
        return self.digest(self.paths()), self.digest(self.extra)

    def poll(self, now: float) -> bool:
        """True: the files changed and their new content is complete; load them."""
        stats = self.stat_all()
        if stats == self.stats and self.pending is None:
            return False
        self.stats = stats
        files, snapshots = self.content()
        if files == self.files and snapshots == self.snapshots:
            self.pending = None
            return False
        if files != self.files and files != self.pending:
            self.pending = files  # look again next poll: still being written?
            return False
        if now - self.last_applied < self.throttle:
            return False
        self.pending = None
        self.files, self.snapshots = files, snapshots
        self.last_applied = now
        return True


class Channel:
    """The master's side publishes; a worker reads the sequence number on its tick."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, SEQUENCE.size)  # MAP_SHARED: inherited by every worker
        self.directory = tempfile.mkdtemp(prefix="hopwire-config-")
        self.sequence = 0

    def path(self, sequence: int) -> str:
        return os.path.join(self.directory, f"dynamic-{sequence}.pickle")

    def publish(self, config: Config) -> int:
        sequence = self.sequence + 1
        tmp = self.path(sequence) + ".tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(config, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path(sequence))
        SEQUENCE.pack_into(self.mem, 0, sequence)
        self.sequence = sequence
        try:
            os.unlink(self.path(sequence - 2))  # a slow worker may still read the one before
        except FileNotFoundError:
            pass
        return sequence

    def current(self) -> int:
        return int(SEQUENCE.unpack_from(self.mem, 0)[0])

    def read(self, sequence: int) -> Config:
        with open(self.path(sequence), "rb") as fh:
            config = pickle.load(fh)
        assert isinstance(config, Config)
        return config

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
