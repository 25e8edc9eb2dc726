"""kill -9 of spool producers and consumers at random points: nothing lost, duplicated or corrupt."""

from spool_crash import run_trials


def test_kill_9_of_producers_and_consumers_loses_no_returned_put(tmp_path, capsys):
    stats = run_trials(tmp_path, trials=300, seed=4)
    with capsys.disabled():
        print(
            f"\nspool kill -9: {stats['trials']} trials passed, {stats['puts_returned']} puts returned, "
            f"{stats['processed']} processed exactly once, {stats['drained_at_end']} drained at the end, "
            f"kills: {stats['kills']}"
        )
    assert stats["puts_returned"] > 1000
