"""Board boot: mount the spool filesystem before main.py starts the node.

On the QEMU board a littlefs filesystem on a RAM disk outside MicroPython's heap, at /flash; it
survives a soft reset (machine.soft_reset()) but not a restart of QEMU. Elsewhere nothing to do.
"""

import sys

# MPS2-AN385 SSRAM2/3: RAM that the firmware never uses (it runs from SSRAM1 at address 0).
_RAMDISK_ADDR = 0x20000000
_RAMDISK_SIZE = 256 * 1024
_BLOCK = 512


class _RAMDisk:
    """A littlefs block device on memory the soft reset leaves alone."""

    def __init__(self, mem):
        self._mem = mem

    def readblocks(self, block, buf, offset=0):
        start = block * _BLOCK + offset
        buf[:] = self._mem[start : start + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        start = block * _BLOCK + offset
        self._mem[start : start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return _RAMDISK_SIZE // _BLOCK
        if op == 5:  # block size
            return _BLOCK
        if op == 6:  # erase: nothing to do in RAM
            return 0
        return None


def _mount_ramdisk():
    import uctypes
    import vfs

    disk = _RAMDisk(uctypes.bytearray_at(_RAMDISK_ADDR, _RAMDISK_SIZE))
    try:
        fs = vfs.VfsLfs2(disk)
    except OSError:  # first boot: no filesystem yet
        vfs.VfsLfs2.mkfs(disk)
        fs = vfs.VfsLfs2(disk)
    vfs.mount(fs, "/flash")


if sys.platform == "qemu":
    _mount_ramdisk()
