"""A staged rollout of one release over the bus (docs/operations.md, "Rollout"): a canary, then growing
waves of OTA deploys; a wave whose failures pass the abort rule stops the rollout, and the wave's devices
that run the new tree are rolled back. Every step is written to the state file before it is taken.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spoolbus import errors
from spoolbus.node import Node

from spoolbus_host.deploy import ota
from spoolbus_host.deploy.build import DeployError, build, find_mpy_cross
from spoolbus_host.paths import RUNTIME
from spoolbus_host.rollout import fleet, plan
from spoolbus_host.rollout.state import Device, State

FINAL = ("done", "failed", "rolled_back")


class RolloutError(Exception):
    """A rollout that cannot start or go on: the message names the problem and the fix."""


@dataclass
class Options:
    waves: str = plan.DEFAULT_WAVES
    parallel: int = 4  # devices of a wave upgraded at once
    max_failed: float = 0.0  # percent of a wave that may fail (the canary may not)
    allow_breaking: bool = False
    dry_run: bool = False
    timeout: float = 5.0  # seconds for each reply
    boot_timeout: float = ota.BOOT_TIMEOUT
    window: int = 4
    mpy_cross: str | None = None
    runtime: Path = RUNTIME


@dataclass
class Report:
    tree: str
    outcome: str  # done, aborted, planned (a dry run)
    reason: str | None = None
    waves: list[list[dict]] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        times = sorted(d["seconds"] for w in self.waves for d in w if d.get("seconds") is not None
                       and d["state"] == "done")
        return {"tree": self.tree, "outcome": self.outcome, "reason": self.reason, "waves": self.waves,
                "skipped": self.skipped, "seconds": round(self.seconds, 2),
                "upgrade_s": {"p50": round(percentile(times, 50), 2), "p99": round(percentile(times, 99), 2)}
                if times else None}


class Rollout:
    """Roll `app` out to the devices matching `patterns`; `connect(k)` gives node k on the broker (0 plans
    and sees every bridge's statuses; 1.. are the workers); `on_event(dict)` hears each step."""

    def __init__(self, connect: Callable[[int], Node], app: Path, patterns: list[str], state: State,
                 opts: Options | None = None, on_event: Callable[[dict], None] | None = None):
        self.connect = connect
        self.app = Path(app)
        self.patterns = patterns
        self.state = state
        self.opts = opts or Options()
        self.on_event = on_event or (lambda e: None)
        self._workers: list[Node] = []
        self._free: list[Node] = []
        self._made = 0  # worker nodes asked of connect(): each its own number, so its own client id
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the whole rollout

    def run(self) -> Report:
        started = time.monotonic()
        self.release = plan.read_release(self.app)
        steps = plan.parse_waves(self.opts.waves)
        try:
            self.tree = build(self.app, find_mpy_cross(self.opts.mpy_cross), self.opts.runtime).tree_id
        except DeployError as e:
            raise RolloutError(str(e)) from None
        report = self._resume_or_plan(steps)
        if report is not None:
            report.seconds = time.monotonic() - started
            return report
        try:
            if self.state.get("outcome") != "aborting":
                for w in range(self.state.waves()):
                    if not self._wave(w):
                        self.state.set(outcome="aborting", reason=self._why(w))
                        break
            if self.state.get("outcome") == "aborting":
                self._roll_back(int(self.state.get("failed_wave") or 0))
                self.state.set(outcome="aborted")
            else:
                self.state.set(outcome="done")
        finally:
            for n in self._workers:
                n.close()
        report = self._report(self.state.get("outcome") or "done", self.state.get("reason"))
        report.seconds = time.monotonic() - started
        self.on_event({"event": "finish", **report.as_dict()})
        return report

    def _resume_or_plan(self, steps: list[tuple[int, bool]]) -> Report | None:
        """None when there are waves to run (planned now or left by a killed run); a Report when not."""
        tree, outcome = self.state.get("tree"), self.state.get("outcome")
        if tree is not None and outcome in (None, "aborting"):
            if tree != self.tree:
                done = sum(d.state == "done" for d in self.state.devices())
                raise RolloutError(
                    f"{self.state.path} holds an unfinished rollout of tree {tree} ({done} of "
                    f"{len(self.state.devices())} devices done), not of this release ({self.tree}): run "
                    "that release again to finish it, or remove the file to start another")
            self.on_event({"event": "resume", "tree": tree, "devices": len(self.state.devices())})
            return None
        if tree == self.tree and outcome == "done":
            self.on_event({"event": "finished_before", "tree": tree})
            return self._report("done", "this release was rolled out before (nothing to do)")
        return self._plan(steps)

    def _plan(self, steps: list[tuple[int, bool]]) -> Report | None:
        node = self.connect(0)
        try:
            up, down = fleet.online(node.transport)
            chosen = plan.select(up, self.patterns)
            skipped = [{"node": n, "why": "offline"} for n in plan.select(down, self.patterns)]
            if not chosen:
                raise RolloutError(f"no online device matches {' '.join(self.patterns)} (online: "
                                   f"{', '.join(up) or 'none'}); check --devices and `spoolbus monitor`")
            views = [fleet.probe(node, n, self.opts.timeout) for n in chosen]
        finally:
            node.close()
        usable = []
        for v in views:
            if v.why:
                skipped.append({"node": v.node, "why": v.why})
            elif v.tree == self.tree:
                skipped.append({"node": v.node, "why": f"runs tree {self.tree} already"})
            else:
                usable.append(v)
        if not usable:
            raise RolloutError("none of the selected devices can take this release: "
                               + "; ".join(f"{s['node']}: {s['why']}" for s in skipped))
        problems = plan.breaking(self.release, {v.node: v.services for v in usable})
        if problems and not self.opts.allow_breaking:
            raise RolloutError("the release would break callers of the fleet: " + "; ".join(problems)
                               + ". Fix release.toml, or roll it out all the same with --allow-breaking")
        order = _across_bridges(usable)
        sizes = plan.wave_sizes(len(order), steps)
        waves, i = [], 0
        for n in sizes:
            waves.append([(v.node, v.tree) for v in order[i:i + n]])
            i += n
        self.on_event({"event": "plan", "tree": self.tree, "waves": [[n for n, _ in w] for w in waves],
                       "skipped": skipped, "breaking": problems})
        if self.opts.dry_run:
            r = Report(self.tree, "planned", skipped=skipped)
            r.waves = [[{"node": n, "state": "pending", "tree": t, "services": _view(views, n).services}
                        for n, t in w] for w in waves]
            return r
        self.state.plan({"tree": self.tree, "app": str(self.app), "waves": self.opts.waves,
                         "skipped": json.dumps(skipped)}, waves)
        return None

    # ---------------------------------------------------------------- one wave

    def _wave(self, w: int) -> bool:
        """Upgrade wave `w`'s devices not done yet; whether the rollout goes on."""
        devices = self.state.devices(w)
        todo = [d for d in devices if d.state not in FINAL]
        self.on_event({"event": "wave", "wave": w, "waves": self.state.waves(), "size": len(devices),
                       "todo": len(todo)})
        stop = threading.Event()

        def one(d: Device) -> None:
            if stop.is_set():
                return
            self._upgrade(d)
            failed = sum(x.state == "failed" for x in self.state.devices(w))
            if plan.aborts(w, len(devices), failed, self.opts.max_failed):
                stop.set()

        self._pool(one, todo)
        failed = sum(x.state == "failed" for x in self.state.devices(w))
        if plan.aborts(w, len(devices), failed, self.opts.max_failed):
            self.state.set(failed_wave=str(w))
            return False
        return True

    def _upgrade(self, d: Device) -> None:
        self.state.mark(d.node, "deploying")
        self._event(d.node, "deploying")
        started = time.monotonic()
        node = self._take()
        try:
            reason = self._bring_up(node, d.node)
        finally:
            self._give(node)
        state = "failed" if reason else "done"
        self.state.mark(d.node, state, reason=reason, seconds=time.monotonic() - started)
        self._event(d.node, state, reason)

    def _bring_up(self, node: Node, name: str) -> str | None:
        """Get `name` onto the release, checked; why not, or None. A device a killed run left on its way
        (its trial running, or the new tree current) is only waited for and checked: never sent twice."""
        o = self.opts
        try:
            view = fleet.probe(node, name, o.timeout)
            if view.why:
                return view.why
            if view.trial == self.tree:
                ota.wait_confirmed(node, name, self.tree, o.timeout, o.boot_timeout)
            elif view.tree != self.tree:
                ota.deploy_over_bus(node, name, self.app, mpy_cross=o.mpy_cross, runtime=o.runtime,
                                    window=o.window, timeout=o.timeout, boot_timeout=o.boot_timeout)
            return self._check(node, name)
        except DeployError as e:
            return str(e)

    def _check(self, node: Node, name: str) -> str | None:
        """The release's gate: its hello advertises the release's API versions and it answers health with
        the new tree confirmed."""
        view = fleet.probe(node, name, self.opts.timeout)
        wrong = plan.advertises(self.release, view.services)
        if wrong:
            return wrong
        try:
            h = node.call(name, "update.health", {}, timeout=self.opts.timeout, retries=1)
        except errors.SpoolbusError as e:
            return f"no answer to update.health ({e})"
        if not isinstance(h, dict) or not h.get("confirmed") or ota.tree_id(h.get("current")) != self.tree:
            return f"update.health answered {h!r}, not tree {self.tree} confirmed"
        return None

    # ---------------------------------------------------------------- taking a wave back

    def _roll_back(self, w: int) -> None:
        """Every device of wave `w` that runs the new tree goes back to the one it ran before."""
        self.on_event({"event": "rollback", "wave": w})

        def one(d: Device) -> None:
            node = self._take()
            try:
                view = fleet.probe(node, d.node, self.opts.timeout)
                if view.tree != self.tree and view.trial != self.tree:
                    if d.state in ("done", "rolling_back"):
                        self.state.mark(d.node, "rolled_back")
                        self._event(d.node, "rolled_back")
                    return
                self.state.mark(d.node, "rolling_back")
                if view.trial == self.tree:  # a trial in progress: let it end, then take it back
                    try:
                        ota.wait_confirmed(node, d.node, self.tree, self.opts.timeout, self.opts.boot_timeout)
                    except DeployError:  # it failed its trial: the board runs its old tree again
                        self.state.mark(d.node, "rolled_back")
                        self._event(d.node, "rolled_back")
                        return
                ota.rollback_over_bus(node, d.node, timeout=self.opts.timeout,
                                      boot_timeout=self.opts.boot_timeout)
                self.state.mark(d.node, "rolled_back")
                self._event(d.node, "rolled_back")
            except DeployError as e:
                self.state.mark(d.node, "failed", reason=f"rollback failed: {e}")
                self._event(d.node, "failed", f"rollback failed: {e}")
            finally:
                self._give(node)

        self._pool(one, self.state.devices(w))

    # ---------------------------------------------------------------- workers, events, report

    def _pool(self, fn: Callable[[Device], None], devices: list[Device]) -> None:
        if not devices:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.opts.parallel, len(devices)))) as ex:
            for f in [ex.submit(fn, d) for d in devices]:
                f.result()

    def _take(self) -> Node:
        with self._lock:
            if self._free:
                return self._free.pop()
            self._made += 1
            k = self._made
        node = self.connect(k)
        with self._lock:
            if node not in self._workers:
                self._workers.append(node)
        return node

    def _give(self, node: Node) -> None:
        with self._lock:
            if node not in self._free:
                self._free.append(node)

    def _event(self, node: str, state: str, reason: str | None = None) -> None:
        counts: dict[str, int] = {}
        for d in self.state.devices():
            counts[d.state] = counts.get(d.state, 0) + 1
        self.on_event({"event": "device", "node": node, "state": state, "reason": reason, "counts": counts})

    def _why(self, w: int) -> str:
        bad = [d for d in self.state.devices(w) if d.state == "failed"]
        what = "the canary" if w == 0 else f"wave {w + 1}"
        return f"{what} failed: " + "; ".join(f"{d.node}: {d.reason}" for d in bad)

    def _report(self, outcome: str, reason: str | None) -> Report:
        r = Report(self.tree, outcome, reason)
        for w in range(self.state.waves()):
            r.waves.append([{"node": d.node, "state": d.state, "old_tree": d.old_tree, "reason": d.reason,
                             "seconds": None if d.seconds is None else round(d.seconds, 2)}
                            for d in self.state.devices(w)])
        r.skipped = json.loads(self.state.get("skipped") or "[]")
        return r


def _across_bridges(views: list[fleet.DeviceView]) -> list[fleet.DeviceView]:
    """The devices in turn from each bridge, so that the canary and every wave reach all of them."""
    by: dict[str, list[fleet.DeviceView]] = {}
    for v in sorted(views, key=lambda v: v.node):
        by.setdefault(v.node.split("/")[0], []).append(v)
    out = []
    while any(by.values()):
        for b in sorted(by):
            if by[b]:
                out.append(by[b].pop(0))
    return out


def _view(views: list[fleet.DeviceView], name: str) -> fleet.DeviceView:
    return next(v for v in views if v.node == name)


def percentile(values: list[float], p: int) -> float:
    """The nearest-rank `p`-th percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, -(-len(values) * p // 100) - 1))]
