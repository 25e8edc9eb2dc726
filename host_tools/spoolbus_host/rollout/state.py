"""A rollout's state in a small SQLite file: the plan and each device's progress, written before each step
is taken, so that a rollout killed at any point and started again goes on where it stopped.

A device's state: pending -> deploying -> done | failed; an aborted wave's done devices ->
rolling_back -> rolled_back (or failed, when the rollback did not take).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
create table if not exists rollout (
    key text primary key,   -- tree, app, waves, outcome, reason
    value text not null
);
create table if not exists devices (
    node text primary key,  -- bridge/device
    wave integer not null,  -- 0 is the canary
    state text not null,    -- pending, deploying, done, failed, rolling_back, rolled_back
    old_tree text,          -- the tree it ran when the rollout was planned
    reason text,            -- why it failed
    seconds real,           -- how long its upgrade took
    updated real not null
);
"""

STATES = ("pending", "deploying", "done", "failed", "rolling_back", "rolled_back")


_FIX = "name another file with --state, or remove this one"


class StateError(Exception):
    """A state file that cannot be used: the message names it and the fix."""


@dataclass
class Device:
    node: str
    wave: int
    state: str
    old_tree: str | None
    reason: str | None
    seconds: float | None


class State:
    """The rollout state file `path`: checked now if it exists, created by the first write (a dry run
    leaves no file). Every write is committed before it returns; a rollout's worker threads share it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise StateError(f"rollout state {self.path}: is a directory; {_FIX}")
        if self.path.exists():
            self._open()
        elif not self.path.parent.is_dir():
            raise StateError(f"rollout state {self.path}: directory {self.path.parent} does not exist; "
                             "create it, or name another file with --state")

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
                if tables and not {"rollout", "devices"} <= tables:
                    raise sqlite3.DatabaseError("it holds other tables")
                db.executescript(_SCHEMA)
            except sqlite3.Error as e:
                raise StateError(f"rollout state {self.path}: not a rollout state file ({e}); "
                                 f"{_FIX}") from None
            self._db = db
        return self._db

    @property
    def db(self) -> sqlite3.Connection:
        return self._open()

    def _read(self, query: str, args: tuple = ()) -> list[tuple]:
        """Rows of `query`; none while the file does not exist yet (reading never creates it)."""
        with self._lock:
            if self._db is None and not self.path.exists():
                return []
            return self.db.execute(query, args).fetchall()

    def get(self, key: str) -> str | None:
        rows = self._read("select value from rollout where key = ?", (key,))
        return rows[0][0] if rows else None

    def set(self, **values: str) -> None:
        with self._lock, self.db:
            self.db.executemany("insert into rollout (key, value) values (?, ?)"
                                " on conflict(key) do update set value = excluded.value",
                                list(values.items()))

    def plan(self, meta: dict[str, str], waves: list[list[tuple[str, str | None]]]) -> None:
        """Start a rollout: forget any earlier one, record `meta` and each wave's (node, its tree)."""
        now = time.time()
        with self._lock, self.db:
            self.db.execute("begin")
            self.db.execute("delete from rollout")
            self.db.execute("delete from devices")
            self.db.executemany("insert into rollout (key, value) values (?, ?)", list(meta.items()))
            self.db.executemany(
                "insert into devices (node, wave, state, old_tree, updated) values (?, ?, 'pending', ?, ?)",
                [(node, w, tree, now) for w, wave in enumerate(waves) for node, tree in wave])

    def devices(self, wave: int | None = None) -> list[Device]:
        q = "select node, wave, state, old_tree, reason, seconds from devices"
        rows = self._read(q + " order by wave, node" if wave is None else q + " where wave = ? order by node",
                          () if wave is None else (wave,))
        return [Device(*r) for r in rows]

    def mark(self, node: str, state: str, reason: str | None = None, seconds: float | None = None) -> None:
        assert state in STATES, state
        with self._lock, self.db:
            self.db.execute("update devices set state = ?, reason = coalesce(?, reason),"
                            " seconds = coalesce(?, seconds), updated = ? where node = ?",
                            (state, reason, seconds, time.time(), node))

    def waves(self) -> int:
        rows = self._read("select max(wave) from devices")
        return 0 if not rows or rows[0][0] is None else rows[0][0] + 1

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
