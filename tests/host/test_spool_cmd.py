"""`spoolbus spool inspect`: counts per state, oldest message, quarantined files; clear errors."""

import json
import os
import subprocess
import sys

from spoolbus import spool


def _inspect(*args):
    return subprocess.run(
        [sys.executable, "-m", "spoolbus_host.cli", "spool", "inspect", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_inspect_reports_each_state_and_the_quarantine(tmp_path):
    d = tmp_path / "s"
    s = spool.Spool(str(d))
    ids = s.put_many([b"x" * 200] * 3)
    m = s.claim()
    (d / "new" / "junk").write_bytes(b"not a record")
    assert s.claim()[0] == ids[1]
    s.nack(ids[1])
    while (n := s.claim()) is not None:
        s.ack(n[0])
    assert s.quarantined == ["junk"]
    s.put(b"y" * 100)
    (d / "tmp" / "0000000000001-p7ffffffe.1-3").write_bytes(b"abc")
    out = _inspect(str(d), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["new"] == {"count": 1, "bytes": 100}
    assert r["claimed"]["count"] == 1 and r["claimed"]["bytes"] == 200
    assert r["claimed"]["consumers"] == [{"owner": spool._OWNER, "claimed": 1, "alive": True}]
    assert r["tmp"] == {"count": 1, "bytes": 3}
    assert r["quarantine"]["count"] == 1 and r["quarantine"]["files"][0]["name"] == "junk"
    assert r["oldest_message"] == m[0] and 0 <= r["oldest_age_s"] < 60
    human = _inspect(str(d))
    assert human.returncode == 0
    assert "quarantined: junk" in human.stdout and "oldest message" in human.stdout
    assert os.listdir(d / "tmp")  # inspect changes nothing: the dead writer's file is still there


def test_inspect_of_an_empty_spool(tmp_path):
    spool.Spool(str(tmp_path / "s"))
    r = json.loads(_inspect(str(tmp_path / "s"), "--json").stdout)
    assert r["new"]["count"] == 0 and r["oldest_age_s"] is None


def test_inspect_of_a_missing_or_non_spool_directory_is_a_clear_error(tmp_path):
    out = _inspect(str(tmp_path / "nope"))
    assert out.returncode == 2 and "no such directory" in out.stderr
    out = _inspect(str(tmp_path))
    assert out.returncode == 2 and "not a spool" in out.stderr


def test_inspect_counts_foreign_files_as_quarantinable_not_as_messages(tmp_path):
    d = tmp_path / "s"
    s = spool.Spool(str(d))
    s.put(b"z" * 50)
    (d / "new" / "notes.txt").write_bytes(b"hello")
    (d / "new" / "0000000000001-x-zz").write_bytes(b"")  # record-like, but its size is not hex
    (d / "cur" / spool._OWNER).mkdir(exist_ok=True)
    (d / "cur" / spool._OWNER / "core").write_bytes(b"123")
    r = json.loads(_inspect(str(d), "--json").stdout)
    assert r["new"] == {"count": 1, "bytes": 50} and r["claimed"]["count"] == 0
    assert r["foreign"] == {"count": 3, "bytes": 8, "files": sorted(
        ["new/notes.txt", "new/0000000000001-x-zz", f"cur/{spool._OWNER}/core"])}
    human = _inspect(str(d)).stdout
    assert "the next claim quarantines them" in human and "foreign: new/notes.txt" in human
    assert s.claim()[1] == b"z" * 50 and s.claim() is None and sorted(s.quarantined) == [
        "0000000000001-x-zz", "notes.txt"]  # the spool agrees: what inspect called foreign is quarantined
