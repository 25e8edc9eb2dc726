"""Board boot: mount the spool filesystem before main.py starts the node.

On the QEMU board a littlefs filesystem on a RAM disk outside MicroPython's heap, at /flash, with
/flash/lib on sys.path; it survives a soft reset (machine.soft_reset()) but not a restart of QEMU.
Elsewhere nothing to do.
"""

import sys

# RAM that the firmware never uses, by machine (sys.implementation._machine starts with its name):
# MPS2-AN385 SSRAM2/3 (the firmware runs from SSRAM1 at address 0); on virt, DRAM 8 MB in, past the
# firmware's 4 MB of code, 2 MB of data and its stack (mcu/rv32/virt.ld), far below QEMU's device tree
# at the top of the default 128 MB.
_RAMDISK_ADDRS = {"mps2-an385": 0x20000000, "virt": 0x80800000}
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

    addr = _RAMDISK_ADDRS[sys.implementation._machine.split(" ")[0]]
    disk = _RAMDisk(uctypes.bytearray_at(addr, _RAMDISK_SIZE))
    try:
        fs = vfs.VfsLfs2(disk)
    except OSError:  # first boot: no filesystem yet
        vfs.VfsLfs2.mkfs(disk)
        fs = vfs.VfsLfs2(disk)
    vfs.mount(fs, "/flash")
    sys.path.append("/flash/lib")  # the board's lib dir: mip installs into the first sys.path entry in /lib


if sys.platform == "qemu":
    _mount_ramdisk()
