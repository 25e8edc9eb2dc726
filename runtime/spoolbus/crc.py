"""CRC-32 (IEEE 802.3, as zlib and binascii compute it) for frames and spool records.

Uses binascii.crc32 where the port has it and a 256-entry table otherwise, with identical results.
"""

try:
    from binascii import crc32 as _native
except ImportError:  # some MicroPython builds lack binascii.crc32
    _native = None

_table = None


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def crc32_table(data, crc=0):
    """The table-driven CRC-32, used when binascii.crc32 is missing."""
    global _table
    if _table is None:
        _table = _make_table()
    t = _table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 of `data`, continuing from `crc` (0 to start)."""
    if _native is not None:
        return _native(data, crc) & 0xFFFFFFFF
    return crc32_table(data, crc)
