"""The device registry: one SQLite row per device a bridge has seen.

Who (node name), where (bridge and link), what (firmware, services and API versions from its hello),
when (last seen) and whether it is online. Written by the bridge at most once a second per device.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

_SCHEMA = """
create table if not exists devices (
    node text primary key,      -- bridge/device
    bridge text not null,
    link text not null,         -- the port or URL the device is attached on
    online integer not null default 0,
    firmware text,
    services text not null default '{}',  -- JSON {service: "major.minor"} from the device's hello
    events text not null default '[]',    -- JSON [event names] it subscribes to
    first_seen real not null,
    last_seen real not null
)
"""


class Registry:
    """The registry in SQLite file `path`, created if new; sqlite3.Error for a file that is not one.

    read_only: open an existing registry without writing anything (`spoolbus devices`). Either way, a
    database that has tables but not the registry's is refused (sqlite3.DatabaseError), never changed.
    """

    def __init__(self, path: str, read_only: bool = False):
        if read_only:
            uri = Path(path).absolute().as_uri() + "?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.db = sqlite3.connect(path, check_same_thread=False)
        try:
            tables = {r[0] for r in self.db.execute("select name from sqlite_master where type='table'")}
            if "devices" not in tables and (tables or read_only):
                raise sqlite3.DatabaseError("no devices table: not a spoolbus device registry")
            if not read_only:
                self.db.execute("pragma journal_mode=wal")
                self.db.execute(_SCHEMA)
                self.db.commit()
        except sqlite3.Error:
            self.db.close()
            raise
        self._written: dict[str, float] = {}

    def attach(self, node: str, bridge: str, link: str) -> None:
        now = time.time()
        self.db.execute("insert into devices (node, bridge, link, first_seen, last_seen)"
                        " values (?, ?, ?, ?, ?)"
                        " on conflict(node) do update set bridge=excluded.bridge, link=excluded.link",
                        (node, bridge, link, now, now))
        self.db.commit()

    def seen(self, node: str, online: bool | None = None) -> None:
        """The device sent something, or went on/offline; plain sightings: one write a second."""
        now = time.time()
        if online is None and now - self._written.get(node, 0) < 1:
            return
        self._written[node] = now
        if online is None:
            self.db.execute("update devices set last_seen=? where node=?", (now, node))
        else:
            self.db.execute("update devices set last_seen=?, online=? where node=?", (now, int(online), node))
        self.db.commit()

    def hello(self, node: str, body: object) -> None:
        """Record what the device's hello says (services, events, firmware if it tells)."""
        if not isinstance(body, dict):
            return
        services = body.get("services") if isinstance(body.get("services"), dict) else {}
        events = body.get("events") if isinstance(body.get("events"), list) else []
        firmware = body.get("firmware") if isinstance(body.get("firmware"), str) else None
        self.db.execute("update devices set services=?, events=?, firmware=coalesce(?, firmware), last_seen=?"
                        " where node=?", (json.dumps(services, sort_keys=True), json.dumps(events), firmware,
                                          time.time(), node))
        self.db.commit()

    def devices(self) -> list[dict]:
        rows = self.db.execute("select node, bridge, link, online, firmware, services, events, first_seen,"
                               " last_seen from devices order by node").fetchall()
        return [{"node": r[0], "bridge": r[1], "link": r[2], "online": bool(r[3]), "firmware": r[4],
                 "services": json.loads(r[5]), "events": json.loads(r[6]), "first_seen": r[7],
                 "last_seen": r[8]} for r in rows]

    def close(self) -> None:
        self.db.close()
