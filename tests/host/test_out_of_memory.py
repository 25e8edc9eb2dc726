"""A MicroPython node whose heap is too small for what it is asked answers `out_of_memory`, never a
silent timeout, and goes on serving: a handler that allocates past the heap, and replies too large to
encode in what is left of it."""

from __future__ import annotations

import pytest
from mpproc import MicroPython
from spoolbus import contract, errors, node
from spoolbus.transport.spool import SpoolTransport

MEM = contract.Service("mem", "1.0")
MEM.method("fill", ("n", int))
MEM.method("blob", ("n", int))
MEM.method("stats")

BOARD = """
import sys
from spoolbus import contract, node
from spoolbus.transport.spool import SpoolTransport

MEM = contract.Service("mem", "1.0")
MEM.method("fill", ("n", int))
MEM.method("blob", ("n", int))
MEM.method("stats")
nd = node.Node("board", SpoolTransport(sys.argv[1], "board"), max_message=65536)
nd.log = lambda text: print("log:", text)
nd.serve(MEM, {"fill": lambda n: len(bytearray(n)), "blob": lambda n: bytes(n),
               "stats": lambda: {"out_of_memory": nd.stats["out_of_memory"],
                                 "internal_errors": nd.stats["internal_errors"]}})
print("ready")
while True:
    nd.poll(20)
"""


@pytest.fixture
def board(tmp_path):
    spool = tmp_path / "spool"
    mp = MicroPython(tmp_path, BOARD, spool, heap="176k")
    try:
        assert mp.line(10) == "ready"
        host = node.Node("host", SpoolTransport(str(spool), "host"), timeout=5, max_message=65536)
        yield host, mp
    finally:
        mp.proc.kill()
        mp.proc.wait()


def test_a_handler_that_allocates_past_the_heap_gets_out_of_memory_and_the_node_serves_on(board):
    host, mp = board
    assert host.call("board", "mem.fill", {"n": 1000}) == 1000
    with pytest.raises(errors.RemoteError) as e:
        host.call("board", "mem.fill", {"n": 1_000_000})
    assert e.value.type == "out_of_memory"
    assert "board ran out of memory serving mem.fill" in e.value.message
    assert "bytes free now" in e.value.message
    assert host.call("board", "mem.fill", {"n": 1000}) == 1000
    assert host.call("board", "mem.stats") == {"out_of_memory": 1, "internal_errors": 0}
    assert any("out of memory, message dropped: MemoryError" in line for line in [mp.line(1)])


def test_replies_too_large_for_the_heap_are_answered_never_left_to_time_out(board):
    host, _ = board
    outcomes = []
    for n in (1000, 8000, 16000, 24000, 32000, 40000, 48000, 56000):
        try:
            outcomes.append(len(host.call("board", "mem.blob", {"n": n})))
        except errors.RemoteError as e:  # a Timeout would fail the test
            assert e.type == "out_of_memory", e
            outcomes.append(e.type)
    assert outcomes[0] == 1000 and outcomes[-1] == "out_of_memory", outcomes
    oom = outcomes.count("out_of_memory")
    assert host.call("board", "mem.blob", {"n": 1000}) == bytes(1000)
    assert host.call("board", "mem.stats") == {"out_of_memory": oom, "internal_errors": 0}
