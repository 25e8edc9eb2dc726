"""The HIL plugin as a user meets it: a failing board test reports the board's console, and the board
is shut down whether the test passed or failed."""

import os
import subprocess
import sys
import textwrap


def test_a_failing_hil_test_reports_the_console_and_the_board_is_stopped(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent('''
        import os

        def test_fails_after_the_board_printed(hil_board):
            hil_board.call("board.log", {"text": "temperature sensor offline"})
            with open(os.environ["PIDFILE"], "w") as f:
                f.write(str(hil_board.proc.pid))
            assert False, "the test failed on purpose"

        def test_passes(hil_board):
            assert hil_board.call("board.add", {"a": 1, "b": 2}) == 3
    '''))
    pidfile = tmp_path / "pid"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--board", "unix", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PIDFILE": str(pidfile)},
    )
    assert "1 failed, 1 passed" in out.stdout, out.stdout[-3000:]
    assert "board unix console" in out.stdout
    assert "temperature sensor offline" in out.stdout
    pid = int(pidfile.read_text())
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    assert stat.strip() in ("", "Z"), f"board process {pid} still running: {stat!r}"
