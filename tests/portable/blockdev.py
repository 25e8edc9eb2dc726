"""Block devices for mounting littlefs and FAT under the MicroPython unix port in tests.

RAMBlockDevice can stop persisting writes after the Nth one (a power cut); FileBlockDevice keeps the
image in a host file, so a later process can mount what an earlier, killed one left behind.
"""


class RAMBlockDevice:
    """A block device in RAM with the extended interface (offsets), as vfs.VfsLfs2 and vfs.VfsFat use it.

    `fail_after_writes=N`: the first N writes (writeblocks calls and erases) persist; the next one raises
    OSError(EIO) and persists nothing, as if the power had been cut then: the program stops there, and
    later writes (finalisers of files it left open) persist nothing. (A program that goes on past the cut
    with its writes silently dropped is not a power cut: FAT then reads back stale tables and can loop
    forever on a cluster chain it believes it wrote.) `writes` counts every write asked for, so a test can
    first count the writes of a run, then cut at each of them. Remount on the same device to see what
    survived.
    """

    def __init__(self, block_size, block_count, fail_after_writes=None):
        self.block_size = block_size
        self.block_count = block_count
        self.data = bytearray(block_size * block_count)
        self.fail_after_writes = fail_after_writes
        self.writes = 0

    def _count_write(self):
        """Whether this write persists; the first one past the cut raises EIO: the program stops there."""
        self.writes += 1
        if self.fail_after_writes is None or self.writes <= self.fail_after_writes:
            return True
        if self.writes == self.fail_after_writes + 1:
            raise OSError(5)  # EIO: the power is gone
        return False  # what finalisers of the dead program still flush goes nowhere (and allocates nothing)

    def readblocks(self, block_num, buf, offset=0):
        if self.fail_after_writes is not None and self.writes > self.fail_after_writes:
            return  # the power is gone (a finaliser of the dead program reads; it must not allocate)
        start = block_num * self.block_size + offset
        buf[:] = self.data[start : start + len(buf)]

    def writeblocks(self, block_num, buf, offset=None):
        if offset is None:  # the simple interface (FAT) erases the blocks it writes
            offset = 0
        if self._count_write():
            start = block_num * self.block_size + offset
            self.data[start : start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase a block (littlefs): flash erases to 0xff
            if self._count_write():
                start = arg * self.block_size
                self.data[start : start + self.block_size] = b"\xff" * self.block_size
            return 0
        return 0  # 1 init, 2 deinit, 3 sync: nothing to do in RAM


class FileBlockDevice(RAMBlockDevice):
    """A block device whose blocks live in a host file, written through at once (no cache).

    Only one process may mount the image at a time: littlefs and FAT cache metadata in the mounting
    process, so two concurrent mounts of one image corrupt it. A later process may mount what an earlier
    one (even one killed with kill -9) left behind.
    """

    def __init__(self, path, block_size, block_count):
        self.block_size = block_size
        self.block_count = block_count
        self.fail_after_writes = None
        self.writes = 0
        try:
            self._f = open(path, "r+b")
        except OSError:
            self._f = open(path, "w+b")
            self._f.write(bytes(block_size * block_count))
            self._f.flush()

    def readblocks(self, block_num, buf, offset=0):
        self._f.seek(block_num * self.block_size + offset)
        self._f.readinto(buf)

    def writeblocks(self, block_num, buf, offset=None):
        self.writes += 1
        self._f.seek(block_num * self.block_size + (offset or 0))
        self._f.write(buf)
        self._f.flush()

    def ioctl(self, op, arg):
        if op == 6:
            self.writeblocks(arg, b"\xff" * self.block_size)
            return 0
        return RAMBlockDevice.ioctl(self, op, arg)

    def close(self):
        self._f.close()
