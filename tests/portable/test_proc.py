"""Processes from /proc: a running process is alive; a reused pid (another start) or a missing one is not."""

from spoolbus import proc


def _me():
    s = proc.read("/proc/self/stat")
    return (s.split(None, 1)[0], proc.fields(s)[19]) if s else (None, None)


def test_this_process_is_alive_with_its_start_time_and_without_one():
    pid, start = _me()
    if pid is None:
        return  # no /proc here
    assert proc.alive(pid, start) and proc.alive(int(pid)) and proc.alive(pid)


def test_a_pid_with_another_start_time_or_no_process_is_not_alive():
    pid, start = _me()
    if pid is None:
        return
    assert not proc.alive(pid, str(int(start) + 1))
    assert not proc.alive(2 ** 22 + 1)  # above pid_max on Linux
    assert proc.read("/nonexistent/file") is None
