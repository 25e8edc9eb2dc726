"""Properties of the framing under hypothesis: random chunking, garbage and corruption never deliver a bad
frame, and every intact frame that follows a delimiter is delivered, in order."""

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from spoolbus import frame

payloads = st.lists(st.binary(max_size=600), min_size=1, max_size=12)


def _reference_cobs(data: bytes) -> bytes:
    out, block, ff_last = bytearray(), bytearray(), False
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block, ff_last = bytearray(), False
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block, ff_last = bytearray(), True
    if block or not ff_last:
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def _chunks(data: bytes, sizes: list[int]):
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        yield data[i : i + n]
        i += n
        k += 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024) | st.binary(max_size=1024).map(lambda b: b.replace(b"\x00", b"\x01")))
def test_encoding_is_reference_cobs_of_payload_and_crc(p):
    assert frame.encode(p) == _reference_cobs(p + zlib.crc32(p).to_bytes(4, "little")) + b"\x00"


@settings(max_examples=300, deadline=None)
@given(payloads, st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_any_chunking_delivers_every_frame_in_order(ps, sizes):
    dec = frame.Decoder()
    got = []
    for chunk in _chunks(b"".join(frame.encode(p) for p in ps), sizes):
        got += dec.feed(chunk)
    assert got == ps
    assert (dec.frames, dec.corrupt, dec.oversize) == (len(ps), 0, 0)


@settings(max_examples=500, deadline=None)
@given(
    payloads,
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 10**6), st.integers(1, 255)), max_size=8),
    st.lists(st.tuples(st.integers(0, 11), st.binary(max_size=50), st.booleans()), max_size=4),
    st.lists(st.integers(1, 200), min_size=1, max_size=10),
    st.sampled_from([frame.MAX_FRAME, 300]),
)
def test_corrupt_frames_are_never_delivered_and_intact_ones_always_are(ps, flips, garbage, sizes, max_frame):
    frames = [bytearray(frame.encode(p)) for p in ps]
    for i, pos, x in flips:
        if i < len(frames):
            frames[i][pos % len(frames[i])] ^= x
    lead = {i: junk + (frame.DELIMITER if delimited else b"") for i, junk, delimited in garbage}
    stream = bytearray()
    intact = []
    for i, f in enumerate(frames):
        stream += lead.get(i, b"")
        after_delimiter = not stream or stream[-1] == 0
        if after_delimiter and f == frame.encode(ps[i]) and len(ps[i]) <= max_frame:
            intact.append(ps[i])
        stream += f
    dec = frame.Decoder(max_frame=max_frame)
    got = []
    for chunk in _chunks(bytes(stream), sizes):
        got += dec.feed(chunk)
    assert got == intact
    assert dec.frames == len(got)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_random_bytes_never_raise_and_never_make_a_frame(data, sizes):
    dec = frame.Decoder(max_frame=256)
    for chunk in _chunks(data, sizes):
        assert dec.feed(chunk) == []
