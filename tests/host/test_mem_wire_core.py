"""The wire core fits its MicroPython heap budget: importing cbor + frame + wire, compiled with
mpy-cross, takes at most 16 KB of heap (bench/mem_wire_core.py measures it; docs/benchmarks.md)."""

import importlib.util
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "mem_wire_core.py"
_spec = importlib.util.spec_from_file_location("mem_wire_core", _PATH)
mem = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mem)


def test_import_of_cbor_frame_and_wire_is_within_16_kb_and_a_round_trip_runs_in_64_kb():
    res = mem.measure("64k")
    assert not [k for k in res if k.startswith("MemoryError")], res
    own = mem.own_import(res)
    assert own <= mem.BUDGET, f"cbor+frame+wire take {own} B of heap on import; the budget is {mem.BUDGET} B"
    assert res["envelope bytes"] >= 90
    assert res["frame.Decoder() kept"] < 2048
