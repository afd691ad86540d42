"""The lock on a build's output folder: one build (or one slice of a sliced build) writes a folder at a time.

``.vidalign/lock.json`` (``lock-slice-<i>-of-<n>.json`` for a slice) is created only if absent
(:meth:`vidalign.storage.Store.create_exclusive`: ``O_EXCL`` locally, a conditional PUT on object stores) and
holds the owner's pid, host, process start time, command and a heartbeat refreshed every
:data:`HEARTBEAT_SECONDS`. Another build finds it and either waits (``--lock-timeout``) or stops with one line
naming the owner. A lock is stale — taken over, with a note — when its owner is gone: on the same host, its pid
is not running or runs another process (start times differ: the pid was reused); on another host, its heartbeat
is older than :data:`STALE_SECONDS`. A whole build and the slices of a sliced build exclude each other; slices
with different indices run side by side, as SLURM arrays need.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from vidalign.errors import VidalignError
from vidalign.storage import Store, attempt_token

LOCK_DIR = ".vidalign"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 600.0


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _host() -> str:
    return f"{socket.gethostname()}/{_boot_id()[:8]}"


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc) or None when it does not run (or is unknowable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
        return "?"


def lock_name(shard_index: int | None = None, num_shards: int | None = None) -> str:
    if num_shards is None:
        return f"{LOCK_DIR}/lock.json"
    return f"{LOCK_DIR}/lock-slice-{shard_index:05d}-of-{num_shards:05d}.json"


def stale_reason(holder: dict, now: float | None = None) -> str | None:
    """Why a lock's owner is gone (None: it may still run)."""
    now = time.time() if now is None else now
    try:
        pid, host = int(holder["pid"]), str(holder["host"])
    except (KeyError, TypeError, ValueError):
        return "the lock file is unreadable"
    if host == _host():
        started = _start_time(pid)
        if started is None:
            return f"pid {pid} is not running"
        if started != "?" and holder.get("start_time") not in (None, "?", started):
            return f"pid {pid} now belongs to another process"
        return None
    age = now - float(holder.get("heartbeat", 0) or 0)
    if age > STALE_SECONDS:
        return f"its heartbeat is {age:.0f} s old (host {host})"
    return None


class BuildLock:
    """``with BuildLock(store, command=...):`` — see the module docstring."""

    def __init__(self, store: Store, command: str = "", shard_index: int | None = None,
                 num_shards: int | None = None, timeout: float = 0.0):
        self.store = store
        self.rel = lock_name(shard_index, num_shards)
        self.sliced = num_shards is not None
        self.command = command
        self.timeout = timeout
        self.token = attempt_token()
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": _host(), "start_time": _start_time(os.getpid()),
                           "created": self.created, "heartbeat": time.time(),
                           "token": self.token, "command": self.command})

    def _read(self, rel: str) -> dict | None:
        try:
            return json.loads(self.store.read_bytes(rel))
        except (FileNotFoundError, OSError):
            return None
        except ValueError:
            return {}

    def _conflicts(self) -> list[str]:
        """Other live locks this one excludes: a whole build excludes every slice, a slice the whole build."""
        if self.sliced:
            return [lock_name()]
        return [f"{LOCK_DIR}/{n}" for n in self.store.listdir(LOCK_DIR) if n.startswith("lock-slice-")]

    def _describe(self, holder: dict, rel: str) -> str:
        return (f"pid {holder.get('pid')} on host {str(holder.get('host', '?')).split('/')[0]}, started "
                f"{holder.get('created', '?')}: {holder.get('command') or 'a vidalign build'}")

    def _clear_if_stale(self, rel: str) -> tuple[bool, dict | None]:
        """(False, holder) while a live build holds ``rel``; (True, None) once it is free."""
        holder = self._read(rel)
        if holder is None:
            return True, None
        reason = stale_reason(holder)
        if reason is None:
            return False, holder
        if self._read(rel) == holder:  # nobody replaced it meanwhile
            print(f"vidalign: removing the stale lock {self.store.display(rel)} ({reason})")
            self.store.delete(rel)
        return True, None

    def acquire(self) -> BuildLock:
        deadline = time.monotonic() + max(0.0, self.timeout)
        while True:
            holder, where = None, self.rel
            if self.store.create_exclusive(self.rel, self._content()):
                for other in self._conflicts():
                    free, holder = self._clear_if_stale(other)
                    if not free:
                        where = other
                        self.store.delete(self.rel)
                        break
                else:
                    self.held = True
                    self._thread = threading.Thread(target=self._beat, name="vidalign-lock", daemon=True)
                    self._thread.start()
                    return self
            else:
                free, holder = self._clear_if_stale(self.rel)
                if free:
                    continue
            if time.monotonic() >= deadline:
                what = "a slice of a sliced build" if where != self.rel and not self.sliced else "another build"
                raise VidalignError(
                    f"{self.store.url}: {what} is writing this folder ({self._describe(holder or {}, where)}); wait "
                    "for it to finish (or pass --lock-timeout SECONDS to wait here), or build into another --out. "
                    f"If that build is gone for good, delete {self.store.display(where)}")
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                current = self._read(self.rel)
                if current is None or current.get("token") != self.token:
                    return  # taken over (we were presumed dead): never overwrite another owner's lock
                self.store.write_atomic(self.rel, self._content(), fsync=False)
            except Exception:  # a missed heartbeat only makes the lock look older
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            current = self._read(self.rel)
            if current is not None and current.get("token") == self.token:
                self.store.delete(self.rel)
            self.held = False

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["BuildLock", "lock_name", "stale_reason", "LOCK_DIR"]
