"""COBS + CRC-32 framing: exact bytes, any chunking, garbage and console text, corruption, size limits."""

from mpcompat import raises
from prng import Rng
from spoolbus import crc, frame
from spoolbus.errors import FrameTooLarge


def _reference_cobs(data):
    """COBS as Cheshire and Baker define it, byte by byte (no trailing 0x01 after a final 0xFF block)."""
    out = bytearray()
    block = bytearray()
    ff_last = False
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
            ff_last = False
        else:
            block.append(b)
            if len(block) == 254:
                out.append(0xFF)
                out += block
                block = bytearray()
                ff_last = True
    if block or not ff_last:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def _crc_le(data):
    c = crc.crc32(data)
    return bytes((c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, c >> 24))


def _payload(r, n, zero_every):
    """n bytes from r; with zero_every > 0 about one byte in zero_every is 0x00."""
    out = bytearray(r.bytes(n))
    for i in range(n):
        if zero_every and r.below(zero_every) == 0:
            out[i] = 0
        elif not zero_every and out[i] == 0:
            out[i] = 1
    return bytes(out)


def _feed_all(dec, data, sizes):
    got = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        got += dec.feed(data[i : i + n])
        i += n
        k += 1
    return got


def test_empty_payload_is_five_code_bytes_and_the_delimiter():
    assert frame.encode(b"") == bytes.fromhex("0101010101 00")
    assert frame.Decoder().feed(bytes.fromhex("0101010101 00")) == [b""]


def test_check_string_frame_has_its_crc_little_endian_after_one_code_byte():
    assert frame.encode(b"123456789") == bytes.fromhex("0e 313233343536373839 2639f4cb 00")


def test_encoding_is_cobs_of_payload_and_crc_at_every_block_boundary():
    r = Rng(7)
    for n in (1, 2, 100, 248, 249, 250, 251, 252, 253, 254, 255, 256, 499, 500, 502, 503, 504, 508, 1024):
        for zero_every in (0, 3, 200):
            p = _payload(r, n, zero_every)
            assert frame.encode(p) == _reference_cobs(p + _crc_le(p)) + b"\x00", (n, zero_every)


def test_payloads_of_every_size_round_trip_whole_and_byte_by_byte():
    r = Rng(11)
    dec = frame.Decoder()
    for n in list(range(0, 300, 7)) + [508, 509, 510, 1000, 1024]:
        p = _payload(r, n, 5 if n % 2 else 0)
        f = frame.encode(p)
        assert dec.feed(f) == [p]
        got = []
        for i in range(len(f)):
            got += dec.feed(f[i : i + 1])
        assert got == [p], n
    assert dec.corrupt == 0 and dec.oversize == 0


def test_many_frames_in_one_chunk_and_in_random_chunks():
    r = Rng(3)
    payloads = [_payload(r, r.below(400), r.below(4) * 50) for _ in range(40)]
    stream = b"".join(frame.encode(p) for p in payloads)
    assert frame.Decoder().feed(stream) == payloads
    sizes = [1 + r.below(97) for _ in range(50)]
    dec = frame.Decoder()
    assert _feed_all(dec, stream, sizes) == payloads
    assert dec.frames == 40 and dec.corrupt == 0


def test_bytearray_and_memoryview_chunks_are_accepted():
    f = frame.encode(b"spoolbus")
    assert frame.Decoder().feed(bytearray(f)) == [b"spoolbus"]
    assert frame.Decoder().feed(memoryview(f)) == [b"spoolbus"]


def test_console_text_between_delimited_frames_is_skipped_and_counted():
    banner = b"MicroPython v1.25.0 on 2026-11-25; linux [GCC 12.2.0] version\r\n>>> "
    stream = (
        banner
        + frame.DELIMITER
        + frame.encode(b"one")
        + b"print('hello')\r\nhello\r\n"
        + frame.DELIMITER
        + frame.encode(b"two")
    )
    dec = frame.Decoder()
    assert dec.feed(stream) == [b"one", b"two"]
    assert (dec.frames, dec.corrupt, dec.oversize) == (2, 2, 0)


def test_frame_glued_to_text_without_a_leading_delimiter_is_lost_but_the_next_is_not():
    dec = frame.Decoder()
    stream = b"log line\r\n" + frame.encode(b"lost") + frame.encode(b"kept")
    assert dec.feed(stream) == [b"kept"]
    assert dec.corrupt == 1


def test_consecutive_delimiters_are_idle_fill_not_errors():
    dec = frame.Decoder()
    assert dec.feed(b"\x00\x00\x00" + frame.encode(b"x") + b"\x00\x00") == [b"x"]
    assert (dec.frames, dec.corrupt, dec.oversize) == (1, 0, 0)


def test_no_single_byte_corruption_is_ever_delivered():
    payload = b"\x00sensor\x00" + bytes(range(1, 200)) + b"\x00\x00reading"
    good = frame.encode(payload)
    dec = frame.Decoder()
    for i in range(len(good) - 1):
        for x in (0x01, 0x80, 0xFF, 0x5A):
            bad = bytearray(good)
            bad[i] ^= x
            assert dec.feed(bytes(bad) + b"\x00") == []
    assert dec.frames == 0 and dec.corrupt > 0
    assert dec.feed(good) == [payload]


def test_truncated_and_overlong_code_chains_are_corrupt():
    dec = frame.Decoder()
    f = frame.encode(b"abcdef")
    assert dec.feed(f[:-3] + b"\x00") == []
    assert dec.feed(b"\x05ab\x00") == []
    assert dec.feed(b"\x01\x01\x00") == []
    assert dec.corrupt == 3 and dec.frames == 0


def test_encode_refuses_payloads_over_max_frame():
    assert len(frame.encode(bytes(1024))) > 1024
    with raises(FrameTooLarge):
        frame.encode(bytes(1025))
    with raises(FrameTooLarge):
        frame.encode(b"12345", max_frame=4)


def test_oversize_frames_are_dropped_and_counted_once_in_any_chunking():
    big = frame.encode(bytes(range(1, 256)) * 2)
    for size in (1, 13, 4096):
        dec = frame.Decoder(max_frame=100)
        stream = big + frame.encode(b"a" * 100) + big + big + frame.encode(b"after")
        assert _feed_all(dec, stream, [size]) == [b"a" * 100, b"after"], size
        assert (dec.frames, dec.oversize, dec.corrupt) == (2, 3, 0)


def test_payload_one_over_the_decoder_limit_is_oversize():
    dec = frame.Decoder(max_frame=300)
    assert dec.feed(frame.encode(bytes(300)) + frame.encode(bytes(301))) == [bytes(300)]
    assert dec.oversize == 1


def test_table_crc_fallback_gives_identical_frames():
    p = b"\x00\x01payload with zeros\x00" * 20
    native = frame.encode(p)
    saved = crc._native
    crc._native = None
    try:
        assert frame.encode(p) == native
        assert frame.Decoder().feed(native) == [p]
    finally:
        crc._native = saved


def test_seeded_fuzz_delivers_only_sent_payloads_and_every_intact_delimited_frame():
    r = Rng(2026)
    sent = []
    stream = bytearray()
    intact = []
    for _ in range(150):
        p = _payload(r, r.below(120), 1 + r.below(8))
        sent.append(p)
        f = bytearray(frame.encode(p))
        kind = r.below(4)
        if kind == 0:  # random garbage, then a delimiter so the next frame is recognised
            stream += r.bytes(r.below(40)) + b"\x00"
        elif kind == 1:  # flip some bytes of this frame, its delimiter included
            for _ in range(1 + r.below(3)):
                f[r.below(len(f))] ^= 1 + r.below(255)
            f += b"\x00"
        elif kind == 2:  # cut the frame short, then a delimiter
            f = f[: r.below(len(f))] + b"\x00"
        else:
            intact.append(p)
        stream += f
    dec = frame.Decoder(max_frame=200)
    sizes = [1 + r.below(64) for _ in range(40)]
    got = _feed_all(dec, bytes(stream), sizes)
    for p in got:
        assert p in sent
    for p in intact:
        assert p in got
    assert dec.frames == len(got)
    assert dec.corrupt > 0


def test_seeded_random_bytes_never_raise():
    r = Rng(99)
    dec = frame.Decoder(max_frame=64)
    for _ in range(1000):
        dec.feed(r.bytes(r.below(200)))
    assert dec.frames == 0
    assert dec.corrupt > 50 and dec.oversize > 50


def _text_decoder(max_frame=frame.MAX_FRAME):
    text = []
    return frame.Decoder(max_frame, on_text=lambda t: text.append(bytes(t))), text


def test_with_on_text_text_run_into_a_frame_costs_the_text_and_goes_to_the_callback():
    dec, text = _text_decoder()
    stream = (b"boot\r\n>>> " + frame.DELIMITER + b"print()\r\n" + frame.encode(b"\x82\x0a\x0a")
              + b"a\nb\n" + frame.encode(b"two\n") + b"tail, no delimiter yet")
    for sizes in ([len(stream)], [1], [7]):
        dec, text = _text_decoder()
        assert _feed_all(dec, stream, sizes) == [b"\x82\x0a\x0a", b"two\n"]
        assert b"".join(text) == b"boot\r\n>>> print()\r\na\nb\n"
        assert dec.frames == 2


def test_with_on_text_a_segment_of_text_counts_once_and_reaches_the_callback_whole():
    dec, text = _text_decoder()
    assert dec.feed(b"line 1\nline 2\nline 3\n\x00" + frame.encode(b"x")) == [b"x"]
    assert text == [b"line 1\nline 2\nline 3\n"]
    assert (dec.frames, dec.corrupt, dec.oversize) == (1, 1, 0)


def test_with_on_text_a_run_longer_than_the_buffer_goes_to_the_callback_and_counts_once():
    banner = b"".join(b"log line %d of a long boot banner\r\n" % i for i in range(60))
    for sizes in ([10 ** 6], [64], [1000]):
        dec, text = _text_decoder()
        line = b"x" * 3000 + b"\n" + frame.encode(b"lost")  # a frame glued to an oversize run goes with it
        stream = banner + frame.DELIMITER + line + frame.encode(b"kept")
        assert _feed_all(dec, stream, sizes) == [b"kept"], sizes
        assert b"".join(text) == banner + line[:-1], sizes
        assert (dec.frames, dec.corrupt, dec.oversize) == (1, 0, 2), sizes


def test_with_on_text_an_oversize_frame_is_text_and_counts_once():
    dec, text = _text_decoder(max_frame=64)
    big = frame.encode(b"y" * 100, max_frame=100)
    assert dec.feed(big + frame.encode(b"ok")) == [b"ok"]
    assert b"".join(text) == big[:-1]
    assert (dec.frames, dec.corrupt, dec.oversize) == (1, 0, 1)
