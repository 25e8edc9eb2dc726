"""Deploy to a MicroPython board over the bus: RPC calls of the board's update service (docs/deploy.md,
"Over the bus (OTA) and the trial boot").

The tree, manifest and on-board layout are the serial deploy's. The board stages the new tree beside
the running one and checks every file's hash; `commit` makes it a trial that the board boots and
confirms once its node answers (update.health), or gives up, booting the old tree again. A cut
transfer resumes with the next deploy: what arrived intact is kept.
"""

from __future__ import annotations

import time
from pathlib import Path

from spoolbus import errors
from spoolbus.node import Node

from spoolbus_host.deploy import transfer
from spoolbus_host.deploy.build import DeployError, build, find_mpy_cross, mpy_cross_version
from spoolbus_host.deploy.micropython import Report
from spoolbus_host.paths import RUNTIME
from spoolbus_host.progress import Progress

BOOT_TIMEOUT = 90.0  # seconds a board has to come back and confirm (its trial deadline is 60 s by default)
_HEALTH_TIMEOUT = 2.0  # seconds a health call waits while the board reboots (it asks again)
# Seconds between probes while the board reboots: frames sent to a console while its loader starts can hold
# a 0x03, which interrupts the boot on a port where Ctrl-C is live (docs/deploy.md), so probe sparingly.
_PROBE_S = 0.5
_FIRST_PROBE_S = 1.0  # after the commit's reply: past the reset (0.2 s) and a unix board's boot
# Seconds a begin waits for a board busy with another host: a cut deploy's own earlier run, say (the
# board keeps a source's claim 10 s after its last call).
_BUSY_WAIT_S = 12.0
_MAX_PASSES = 8  # transfer passes in a row that end in an error without anything new arriving


def deploy_over_bus(
    node: Node,
    target: str,
    app: Path,
    *,
    mpy_cross: str | None = None,
    runtime: Path = RUNTIME,
    progress: Progress | None = None,
    window: int = 4,
    timeout: float = 5.0,
    boot_timeout: float = BOOT_TIMEOUT,
) -> Report:
    """Deploy `app` (and the runtime) to node `target` through `node`; `window` puts in flight, `timeout`
    seconds for each reply, `boot_timeout` for the board to come back with the new tree confirmed.

    Returns the Report (its `port` is the target); raises DeployError with what to do, the board still
    running its old tree (or running it again, after a failed trial).
    """
    started = time.monotonic()
    tool = find_mpy_cross(mpy_cross)
    node.hello(target)  # its answer tells the board's boot nonce: how the reboot is recognised
    st = _status(node, target, timeout)
    expected = mpy_cross_version(tool)
    mpy = st.get("mpy")
    if isinstance(mpy, int) and mpy & 0xFF and mpy & 0xFF != expected:
        raise DeployError(
            f"{target} loads .mpy version {mpy & 0xFF} but {tool} emits version {expected}: use the "
            "mpy-cross of the board's MicroPython release (--mpy-cross)"
        )
    b = build(Path(app), tool, runtime)
    old = st.get("current")
    report = Report(target, b.tree_id, tree_id(old), len(b.files))
    boot = _boot_nonce(node, target)
    names = sorted(b.files)  # file numbers: manifest lines
    w = transfer.Window(node, target, window, timeout)
    sender = transfer.Sender(w, st["chunk"], st.get("z") or 0)
    begin = {"tree": b.tree_id, "size": len(b.manifest)}
    stuck = 0
    commits = 0
    counted = False  # the first answer with the files says what this deploy sends
    while True:
        reply = _call(node, target, "update.begin", begin, timeout, busy_wait=_BUSY_WAIT_S)
        if reply.get("up_to_date"):
            report.up_to_date = True
            report.verified = len(b.files)  # the board re-hashed its running tree
            report.seconds = time.monotonic() - started
            return report
        if "manifest" in reply:
            have = int(reply["manifest"])
            sender.seen(-1, have)
            done = sender.send([(-1, b.manifest, have)])
        else:
            need = [(int(f), int(h)) for f, h in reply.get("need", [])]
            if not counted:
                counted = True
                report.sent = len(need)
                report.reused = len(b.files) - len(need)
                _start_progress(progress, sender, names, [(f, h, len(b.files[names[f]])) for f, h in need])
            for f, h in need:
                sender.seen(f, h)
            done = sender.send([(f, b.files[names[f]], h) for f, h in need]) if need else None
            if done is None or done.failed is None:
                try:
                    trial = _call(node, target, "update.commit", {"tree": b.tree_id}, timeout)["trial"]
                    break
                except _Incomplete:
                    commits += 1
                    if commits > 2:
                        raise DeployError(f"{target} still misses files of tree {b.tree_id} after they "
                                          "were sent; deploy again (the old code still runs)") from None
                    continue
        if done.failed is not None:
            _transfer_error(done.failed, target)
            stuck = 0 if done.progressed else stuck + 1
            if stuck >= _MAX_PASSES:
                raise DeployError(f"the transfer to {target} keeps failing ({done.failed.error}); the old "
                                  "code still runs: check the link (`spoolbus monitor`) and deploy again")
    report.bytes_sent = sender.wire_bytes
    if progress:
        progress.finish()
    _await(node, target, trial, boot, timeout, boot_timeout, failing=True)
    report.verified = len(b.files) + 1  # and the manifest: commit checked each file
    report.seconds = time.monotonic() - started
    return report


def wait_confirmed(node: Node, target: str, tree: str, timeout: float = 5.0,
                   boot_timeout: float = BOOT_TIMEOUT) -> None:
    """Wait for `target`, whose trial of `tree` is under way (a deploy that was cut after its commit),
    to run it confirmed; DeployError with the board's reason when the trial fails."""
    _await(node, target, tree, None, timeout, boot_timeout, failing=True)


def rollback_over_bus(node: Node, target: str, *, timeout: float = 5.0,
                      boot_timeout: float = BOOT_TIMEOUT) -> Report:
    """Make the board's previous tree its current one (and the current one its previous), then wait for
    it to come back running it. DeployError "no previous tree on TARGET" when it has none."""
    started = time.monotonic()
    node.hello(target)
    st = _status(node, target, timeout)
    boot = _boot_nonce(node, target)
    current = _call(node, target, "update.rollback", {}, timeout)["current"]
    _await(node, target, current, boot, timeout, boot_timeout, failing=False)
    return Report(target, tree_id(current), tree_id(st.get("current")), 0, rolled_back=True,
                  seconds=time.monotonic() - started)


def fetch(node: Node, target: str, path: str, *, window: int = 4, timeout: float = 5.0) -> bytes:
    """The file `path` (relative to the board's deploy root, e.g. app/failed) from `target`."""
    st = _status(node, target, timeout)
    w = transfer.Window(node, target, window, timeout)
    try:
        return transfer.read(w, path, st["chunk"])
    except errors.RemoteError as e:
        raise _refusal(e, target, "update.read", path) from None
    except (errors.Timeout, errors.LinkError):
        raise _silent(target) from None


# ---------------------------------------------------------------- internals


class _Incomplete(DeployError):
    """commit refused: not every file arrived (begin again)."""


def tree_id(d: object) -> str | None:
    return d.split(".")[0] if isinstance(d, str) and d else None


def _status(node: Node, target: str, timeout: float) -> dict:
    st = _call(node, target, "update.status", {}, timeout)
    chunk = st.get("chunk")
    if not isinstance(chunk, int) or chunk < 64 or not isinstance(st.get("z", 0), int):
        raise DeployError(f"{target} answered update.status with chunk={chunk!r}, z={st.get('z')!r}: "
                          "is its update service spoolbus's?")
    return st


def _boot_nonce(node: Node, target: str) -> object:
    """The boot nonce of `target`'s last hello (None if none came): it changes when the board reboots."""
    peer = node.peers.get(target)
    return peer[2] if peer else None


def _call(node: Node, target: str, method: str, args: dict, timeout: float, busy_wait: float = 0.0) -> dict:
    """One call of the update service; a `busy` refusal is asked again each second for `busy_wait` s."""
    waited = time.monotonic() + busy_wait
    while True:
        try:
            reply = node.call(target, method, args, timeout=timeout, retries=0)
            break
        except errors.RemoteError as e:
            if e.type == "busy" and time.monotonic() < waited:
                time.sleep(1.0)
                continue
            raise _call_error(e, target, method) from None
        except (errors.Timeout, errors.LinkError):
            raise _silent(target) from None
    if not isinstance(reply, dict):
        raise DeployError(f"{target} answered {method} with {reply!r}; is its update service spoolbus's?")
    return reply


def _call_error(e: errors.RemoteError, target: str, method: str) -> DeployError:
    if e.type == "incomplete" and method == "update.commit":
        return _Incomplete(e.message)
    return _refusal(e, target, method)


def _silent(target: str) -> DeployError:
    return DeployError(
        f"no reply from {target}: is it online and serving update (`update.serve(node)` in its "
        f"application)? see `spoolbus monitor {target}`; a board with keys drops unsigned calls "
        "(--key-file)"
    )


def _refusal(e: errors.RemoteError, target: str, method: str, path: str = "") -> DeployError:
    """A typed error reply of the update service as what to do about it."""
    what = {
        "no_space": f"{target} has no room for the new tree ({e.message}); free space on the board or "
                    "deploy a smaller application",
        "busy": f"another host is updating {target} ({e.message}); it stays busy for 10 s after that "
                "host's last call: deploy again then",
        "not_trusted": f"{target} does not let this host update it ({e.message}): name the host's node "
                       "in `trusted` of update.serve on the board, and sign with its key (--key-file)",
        "bad_manifest": f"{target} refused the manifest ({e.message}); the old code still runs",
        "no_previous": f"no previous tree on {target}",
        "not_found": f"{path}: no such file on {target}",
        "bad_path": f"{path!r} is not a file under {target}'s deploy root; give a path such as "
                    "app/failed",
        "no_such_service": f"{target} serves no update service: add `update.serve(node)` to its "
                           "application (deploy that once with --port)",
    }.get(e.type)
    if what is None:
        what = f"{target} refused {method}: {e.type}: {e.message}; the old code still runs"
    return DeployError(what)


def _transfer_error(failed: transfer.Outcome, target: str) -> None:
    """Raise for a failure a new pass cannot mend; return for those it can (a lost or out-of-order put,
    a file whose hash was wrong: begin tells what the board has, a new stream starts there)."""
    e = failed.error
    if isinstance(e, errors.RemoteError) and e.type not in ("out_of_order", "hash_mismatch"):
        raise _refusal(e, target, "update.put")


def _start_progress(progress: Progress | None, sender: transfer.Sender, names: list[str],
                    need: list[tuple[int, int, int]]) -> None:
    """The serial deploy's bar: files and bytes still to send."""
    if progress:
        sender.on_file = lambda f: progress.advance_file(names[f])
        progress.start(len(need), sum(size - have for _, have, size in need))
        sender.on_bytes = progress.advance_bytes


def _await(node: Node, target: str, tree: str, boot: object, timeout: float, boot_timeout: float,
           failing: bool) -> None:
    """Wait until `target` has rebooted (a new boot nonce in its hello, where its old one was known) and
    runs `tree`, confirmed. With `failing`, a trial that failed (status: current is not `tree`, no trial,
    `failed` names it) raises DeployError with the board's reason."""
    deadline = time.monotonic() + boot_timeout
    health_timeout = min(timeout, _HEALTH_TIMEOUT)
    time.sleep(_FIRST_PROBE_S)  # the board resets 0.2 s after its reply, then boots
    while time.monotonic() < deadline:
        node.hello(target)
        try:
            h = node.call(target, "update.health", {}, timeout=health_timeout, retries=0)
        except (errors.Timeout, errors.LinkError):
            continue
        except errors.RemoteError as e:
            raise _refusal(e, target, "update.health") from None
        rebooted = boot is None or _boot_nonce(node, target) not in (boot, None)
        if not rebooted or not isinstance(h, dict):
            time.sleep(_PROBE_S)
            continue
        if h.get("confirmed") and h.get("current") == tree:
            return
        if failing:
            st = _status(node, target, timeout)
            failed = st.get("failed") or {}
            over = not st.get("trial") and st.get("current") != tree
            if over and failed.get("tree") in (tree, tree_id(tree)):
                raise DeployError(f"the new tree {tree_id(tree)} failed its trial on {target}: "
                                  f"{failed.get('reason') or 'no reason given'}; the board runs "
                                  f"{st.get('current')} again")
        time.sleep(0.05)
    raise DeployError(f"{target} did not come back running tree {tree_id(tree)} in {boot_timeout:.0f} s; "
                      f"see `spoolbus monitor {target}` and `spoolbus fetch {target} app/failed`")
