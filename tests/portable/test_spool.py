"""The file spool: FIFO put/claim/ack/nack, quotas, quarantine of bad files, recovery after crashes."""

import os

from mpcompat import raises, remove_tree, temp_dir, tmpdir
from spoolbus import spool
from spoolbus.spool import SpoolError, SpoolFull

_DEAD = "p7ffffffe.1"  # a pid no process has: its claims and tmp files belong to a dead process


def _drain(s):
    out = []
    while True:
        m = s.claim()
        if m is None:
            return out
        out.append(m[1])
        s.ack(m[0])


def _files(path):
    return sorted(os.listdir(path))


def _dead_name(payload_len=3, stamp=1):
    return "%013x-%s-%x" % (stamp, _DEAD, payload_len)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_messages_come_out_in_put_order_and_ack_removes_them():
    with temp_dir() as d:
        s = spool.Spool(d)
        ids = [s.put(b"m%d" % i) for i in range(20)]
        assert ids == sorted(ids)
        assert len(s) == 20
        assert _drain(s) == [b"m%d" % i for i in range(20)]
        assert len(s) == 0
        assert s.claim() is None
        assert _files(d + "/new") == [] and _files(d + "/tmp") == []


def test_put_many_returns_ids_in_order_and_empty_payloads_work():
    with temp_dir() as d:
        s = spool.Spool(d)
        ids = s.put_many([b"a", b"", b"c" * 1000])
        assert ids == sorted(ids) and len(ids) == 3
        assert _drain(s) == [b"a", b"", b"c" * 1000]
        assert s.put_many([]) == []


def test_nack_returns_the_message_to_its_place_in_fifo_order():
    with temp_dir() as d:
        s = spool.Spool(d)
        for i in range(5):
            s.put(b"%d" % i)
        first = s.claim()
        second = s.claim()
        s.nack(second[0])
        s.nack(first[0])
        assert _drain(s) == [b"0", b"1", b"2", b"3", b"4"]


def test_nacked_message_is_seen_by_another_consumer_after_its_refill():
    with temp_dir() as d:
        a = spool.Spool(d)
        b = spool.Spool(d)
        a.put(b"x")
        m = a.claim()
        assert b.claim() is None
        a.nack(m[0])
        assert b.claim()[1] == b"x"


def test_competing_consumers_each_message_is_claimed_once():
    with temp_dir() as d:
        p = spool.Spool(d)
        for i in range(50):
            p.put(b"%d" % i)
        consumers = [spool.Spool(d) for _ in range(3)]
        got = []
        empty = 0
        while empty < len(consumers):
            empty = 0
            for c in consumers:
                m = c.claim()
                if m is None:
                    empty += 1
                else:
                    got.append(m[1])
                    c.ack(m[0])
        assert sorted(got) == sorted(b"%d" % i for i in range(50))


def test_ack_or_nack_of_an_unclaimed_id_is_a_clear_error():
    with temp_dir() as d:
        s = spool.Spool(d)
        mid = s.put(b"x")
        with raises(SpoolError) as e:
            s.ack(mid)
        assert "not claimed" in str(e.value)
        m = s.claim()
        s.ack(m[0])
        with raises(SpoolError):
            s.nack(m[0])


def test_message_quota_raises_spool_full_and_frees_up_after_consuming():
    with temp_dir() as d:
        s = spool.Spool(d, max_messages=3)
        s.put_many([b"1", b"2"])
        s.put(b"3")
        with raises(SpoolFull) as e:
            s.put(b"4")
        assert "max_messages" in str(e.value)
        with raises(SpoolFull):
            s.put_many([b"4", b"5"])
        assert _drain(s)[0] == b"1"
        s.put(b"again")
        assert len(s) == 1


def test_byte_quota_counts_payload_bytes_and_claimed_messages():
    with temp_dir() as d:
        s = spool.Spool(d, max_bytes=100)
        s.put(b"x" * 60)
        m = s.claim()  # claimed but not acked: still held
        with raises(SpoolFull):
            s.put(b"y" * 50)
        s.put(b"y" * 40)
        s.ack(m[0])
        s.put(b"z" * 50)


def test_quota_sees_the_puts_of_another_producer():
    with temp_dir() as d:
        a = spool.Spool(d, max_messages=10)
        b = spool.Spool(d, max_messages=10)
        a.put_many([b"a"] * 6)
        with raises(SpoolFull):
            for _ in range(10):
                b.put(b"b")
        # b counted before a's puts: it rescans after spending half the room it saw (5 of 10)
        assert 10 <= len(a) <= 10 + 5


def test_torn_and_foreign_files_are_quarantined_never_delivered():
    with temp_dir() as d:
        s = spool.Spool(d)
        good = s.put(b"good")
        rec = spool.record(b"payload")
        _write(d + "/new/" + _dead_name(7, 1), rec[:-2])  # torn: shorter than its length says
        bad = bytearray(rec)
        bad[-1] ^= 1
        _write(d + "/new/" + _dead_name(7, 2), bytes(bad))  # a flipped bit
        _write(d + "/new/README", b"not a record")
        _write(d + "/new/" + _dead_name(0, 3), b"")
        os.mkdir(d + "/new/subdir")
        c = spool.Spool(d)
        m = c.claim()
        assert m == (good, b"good")
        c.ack(m[0])
        assert c.claim() is None
        assert c.corrupt == 5
        assert sorted(c.quarantined) == sorted(_files(d + "/quarantine"))
        assert "README" in c.quarantined and "subdir" in c.quarantined


def test_record_check_rejects_every_truncation_and_foreign_magic():
    rec = spool.record(b"hello spool")
    assert spool.check(rec) == b"hello spool"
    for n in range(len(rec)):
        assert spool.check(rec[:n]) is None
    assert spool.check(b"XXXX" + rec[4:]) is None
    assert spool.check(rec + b"\x00") is None


def test_open_removes_tmp_files_of_dead_writers_and_keeps_live_ones():
    with temp_dir() as d:
        spool.Spool(d)
        dead = _dead_name()
        live = "%013x-%s-%x" % (5, spool._OWNER, 3)
        _write(d + "/tmp/" + dead, b"half")
        _write(d + "/tmp/" + live, b"writing")
        _write(d + "/tmp/junk", b"?")
        s = spool.Spool(d)
        assert _files(d + "/tmp") == [live]
        assert _files(d + "/quarantine") == ["junk"]
        assert s.claim() is None


def test_recovery_keeps_a_put_committed_after_it_listed_tmp():
    """Listed tmp/ while a writer was mid-put; the put committed and returned, then the writer died.

    kill -9 trials lost a returned put this way: recovery took the stale listing for a FAT double entry.
    """
    with temp_dir() as d:
        s = spool.Spool(d)
        name = _dead_name(9)
        _write(d + "/new/" + name, spool.record(b"committed"))  # tmp/name renamed, then the writer died
        real = spool._names
        spool._names = lambda path: [name] if path.endswith("/tmp/") else real(path)
        try:
            assert s.recover() == (0, 0)
        finally:
            spool._names = real
        assert _files(d + "/new") == [name]
        assert _drain(s) == [b"committed"]


def test_claims_of_a_dead_consumer_return_to_new_in_order():
    with temp_dir() as d:
        s = spool.Spool(d)
        ids = [s.put(b"%d" % i) for i in range(4)]
        os.mkdir(d + "/cur/" + _DEAD)
        for mid in ids[:2]:
            os.rename(d + "/new/" + mid, d + "/cur/" + _DEAD + "/" + mid)
        assert s.recover() == (2, 0)
        assert _files(d + "/cur") == [spool._OWNER]  # the dead one is gone; ours is made on open
        assert _drain(spool.Spool(d)) == [b"0", b"1", b"2", b"3"]


def test_claims_of_a_live_consumer_stay_claimed():
    with temp_dir() as d:
        s = spool.Spool(d)
        s.put(b"x")
        m = s.claim()
        other = spool.Spool(d)  # same process: its owner is alive
        assert other.claim() is None
        assert len(other) == 1
        s.ack(m[0])


def test_claim_left_in_two_places_by_a_cut_rename_is_kept_once():
    # On FAT a rename cut by power leaves two directory entries on one cluster chain (new/ and cur/).
    with temp_dir() as d:
        s = spool.Spool(d)
        mid = s.put(b"once")
        os.mkdir(d + "/cur/" + _DEAD)
        _write(d + "/cur/" + _DEAD + "/" + mid, spool.record(b"once"))
        assert spool.Spool(d).recover() == (0, 0)
        assert _files(d + "/new") == [mid] and _files(d + "/tmp") == []
        assert _files(d + "/cur") == [spool._OWNER]
        assert _drain(s) == [b"once"]


def test_interrupted_repair_copy_is_finished_on_the_next_open():
    with temp_dir() as d:
        s = spool.Spool(d)
        mid = s.put(b"kept")
        _write(d + "/tmp/" + mid + ".dn", spool.record(b"kept"))  # copy complete, old entries not yet gone
        os.mkdir(d + "/cur/" + _DEAD)
        _write(d + "/cur/" + _DEAD + "/" + mid, spool.record(b"kept"))
        spool.Spool(d)
        assert _files(d + "/tmp") == [] and _files(d + "/new") == [mid]
        torn = s.put(b"whole")
        _write(d + "/tmp/" + torn + ".dn", spool.record(b"whole")[:5])  # copy cut short: dropped
        spool.Spool(d)
        assert _files(d + "/tmp") == []
        assert _drain(s) == [b"kept", b"whole"]


def test_uncommitted_put_left_in_tmp_and_new_by_a_cut_rename_is_dropped():
    with temp_dir() as d:
        spool.Spool(d)
        name = _dead_name(1)
        _write(d + "/tmp/" + name, spool.record(b"x"))
        _write(d + "/new/" + name, spool.record(b"x"))
        s = spool.Spool(d)
        assert _files(d + "/tmp") == [] and _files(d + "/new") == []
        assert s.claim() is None


def test_a_producer_stamps_after_the_backlog_even_if_the_clock_is_behind():
    d = tmpdir()
    saved = spool._last_us[0]
    try:
        spool.Spool(d)
        future = "%013x-%s-%x" % (spool._stamp() + 10**9, _DEAD, 1)  # written by a clock 1000 s ahead
        _write(d + "/new/" + future, spool.record(b"1"))
        s = spool.Spool(d)
        mid = s.put(b"2")
        assert mid > future
        assert _drain(s) == [b"1", b"2"]
    finally:
        spool._last_us[0] = saved
        remove_tree(d)


def test_missing_parent_directory_is_a_clear_error():
    with raises(SpoolError) as e:
        spool.Spool("/tmp/no-such-parent-for-spoolbus/spool")
    assert "parent" in str(e.value)


def test_spool_directory_is_created_with_its_subdirectories():
    with temp_dir() as d:
        spool.Spool(d + "/inner/")
        assert _files(d + "/inner") == ["cur", "new", "quarantine", "tmp"]


def test_recovery_racing_another_process_that_returned_the_claim_first_keeps_one_copy():
    with temp_dir() as d:
        s = spool.Spool(d)
        mid = s.put(b"raced")
        # This process listed cur/<dead>/mid, then another process moved it to new/ before our rename.
        assert s._return_claim(d + "/cur/" + _DEAD + "/" + mid, mid) == 0
        assert _files(d + "/new") == [mid] and _files(d + "/tmp") == []
        assert _drain(s) == [b"raced"]
