"""CRC-32 gives the zlib values through both the native and the table implementation."""

from spoolbus import crc


def test_crc32_check_value():
    assert crc.crc32(b"123456789") == 0xCBF43926
    assert crc.crc32(b"") == 0


def test_table_fallback_matches_native_value():
    assert crc.crc32_table(b"123456789") == 0xCBF43926
    data = bytes(range(256)) * 3
    assert crc.crc32_table(data) == crc.crc32(data)


def test_crc32_continues_across_chunks():
    data = b"spoolbus frames arrive in pieces"
    whole = crc.crc32(data)
    assert crc.crc32(data[10:], crc.crc32(data[:10])) == whole
    assert crc.crc32_table(data[10:], crc.crc32_table(data[:10])) == whole
