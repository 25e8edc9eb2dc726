"""The demo's staged rollout (docs/demo.md): the sensor application's new release over every sensor with
`spoolbus_host.rollout` (a canary, then growing waves, through the bridge), then a bad release, which
its canary stops and the rollout rolls back. Runs in a thread while the host's traffic goes on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from spoolbus.node import Node

from spoolbus_host.demo.fleet import BAD, BRIDGE, GOOD, SENSORS, Fleet
from spoolbus_host.demo.traffic import Traffic
from spoolbus_host.mqtt.paho import PahoTransport
from spoolbus_host.rollout import fleet as fleet_view
from spoolbus_host.rollout.run import Options, Rollout
from spoolbus_host.rollout.state import STATES, State

PATTERN = f"{BRIDGE}/sensor*"
BOOT_TIMEOUT_S = 30.0  # a board not back on its new tree by then fails its wave (the CLI's default: 90 s)
TIMEOUT_S = 5.0


class Staged:
    """`start()` once the sensor's upgrade is done; `finished` when both rollouts ended (or failed);
    `note(line)` hears a progress line per step, from the rollout's threads."""

    def __init__(self, fleet: Fleet, traffic: Traffic, note: Callable[[str], None]):
        self.fleet = fleet
        self.traffic = traffic
        self.note = note
        # (label, release directory, the outcome it must have)
        self.releases = [(f"sensor {GOOD}", fleet.release_dir(GOOD), "done"),
                         (f"sensor {BAD} (bad)", fleet.release_dir(GOOD, declares=BAD), "aborted")]
        self.reports: list[dict] = []
        self.trees: dict[str, str | None] = {}  # each sensor's tree once both rollouts ended
        self.started_s: float | None = None
        self.finished_s: float | None = None
        self.failed_before = 0
        self.failed_after: int | None = None
        self.error = ""
        self._lock = threading.Lock()
        self._label = ""
        self._wave = ""
        self._step = ""
        self._thread = threading.Thread(target=self._run, daemon=True, name="rollout")

    def start(self) -> None:
        self.started_s = self.traffic.now()
        self.failed_before = self.traffic.snapshot()["calls_failed"]
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self.finished_s is not None

    # ------------------------------------------------------------------ the two rollouts

    def _run(self) -> None:
        state = State(self.fleet.workdir / "rollout.sqlite")
        try:
            for label, app, _ in self.releases:
                with self._lock:
                    self._label, self._wave, self._step = label, "", "planning"
                ro = Rollout(self._connect, app, [PATTERN], state, Options(timeout=TIMEOUT_S,
                             boot_timeout=BOOT_TIMEOUT_S), on_event=self._event)
                self.reports.append({"release": label, "app": app.name, **ro.run().as_dict()})
            self.trees = self._trees()
        except Exception as e:  # noqa: BLE001 - reported in the summary, the demo then fails
            self.error = f"{self._label}: {type(e).__name__}: {e}"
        finally:
            state.close()
            self.failed_after = self.traffic.snapshot()["calls_failed"]
            self.finished_s = self.traffic.now()

    def _node(self, device: str, watch: bool) -> Node:
        b = self.fleet.broker
        t = PahoTransport(b.host, b.port, "host", device, prefix=self.fleet.bridge.prefix, clean_session=True,
                          presence=False, watch="+" if watch else None, client_id=f"{device}-{os.getpid()}")
        return Node(t.name, t, timeout=TIMEOUT_S, max_pending=8, max_message=65536)

    def _connect(self, k: int) -> Node:
        """The rollout's node k: 0 plans and sees every bridge's statuses, 1.. upgrade a device each."""
        return self._node(f"demo-rollout-{k}", k == 0)

    def _trees(self) -> dict[str, str | None]:
        """The tree each sensor runs now, by its update.status."""
        node = self._node("demo-rollout-check", False)
        try:
            return {f"{BRIDGE}/{k}": fleet_view.probe(node, f"{BRIDGE}/{k}", TIMEOUT_S).tree for k in SENSORS}
        finally:
            node.close()

    def _event(self, e: dict) -> None:
        with self._lock:
            line = self._describe(e)
        if line:
            self.note(f"[t={self.traffic.now():4.1f} s] rollout {self._label}: {line}")

    def _describe(self, e: dict) -> str | None:
        kind = e["event"]
        if kind == "plan":
            waves = " | ".join(" ".join(w) for w in e["waves"])
            skipped = "".join(f"; skipped {s['node']} ({s['why']})" for s in e["skipped"])
            self._step = f"tree {e['tree']}, {len(e['waves'])} waves"
            return f"tree {e['tree']} in {len(e['waves'])} waves [{waves}]{skipped}"
        if kind == "wave":
            self._wave = f"wave {e['wave'] + 1}/{e['waves']}" + (" (canary)" if e["wave"] == 0 else "")
            self._step = _devices(e["size"])
            return f"{self._wave}: {self._step}, {e['todo']} to update"
        if kind == "device":
            why = f" ({e['reason']})" if e.get("reason") else ""
            self._step = _counts(e["counts"])
            return f"{self._wave}: {e['node']} {e['state']}{why} [{self._step}]"
        if kind == "rollback":
            self._wave = f"rolling wave {e['wave'] + 1} back"
            return f"aborting: {self._wave}"
        if kind == "finish":
            self._step = e["outcome"]
            return e["outcome"] + (f": {e['reason']}" if e.get("reason") else "")
        return None

    # ------------------------------------------------------------------ reporting

    def failed_during(self) -> int:
        """Failed host calls (to any board) while the rollouts ran."""
        if self.started_s is None:
            return 0
        end = self.failed_after if self.failed_after is not None else self.traffic.snapshot()["calls_failed"]
        return end - self.failed_before

    @property
    def good_tree(self) -> str | None:
        return self.reports[0]["tree"] if self.reports else None

    def problems(self) -> list[str]:
        """What makes the demo fail: a rollout that did not end as it must, a sensor off the good tree."""
        if self.started_s is None:
            return ["staged rollout not started (it follows the sensor's upgrade)"]
        if not self.finished:
            return [f"staged rollout not finished: {self.line()}"]
        out = [f"staged rollout: {self.error}"] if self.error else []
        for r, (label, _, expected) in zip(self.reports, self.releases[:len(self.reports)], strict=True):
            if r["outcome"] != expected:
                out.append(f"the rollout of {label} ended {r['outcome']}, not {expected}: {r['reason']}")
        if len(self.reports) == 2:
            canary = _canary(self.reports[1])
            if canary is None or canary["state"] != "rolled_back":
                out.append(f"the bad release's canary is {canary and canary['state']}, not rolled_back")
        off = {n: t for n, t in self.trees.items() if t != self.good_tree}
        if self.trees and off:
            out.append("not on the good tree after the rollouts: "
                       + ", ".join(f"{n} runs {t}" for n, t in sorted(off.items())))
        if self.failed_during():
            out.append(f"{self.failed_during()} host calls failed during the staged rollout")
        return out

    def line(self) -> str:
        """One line for the live view: what the rollout does now, or how it ended."""
        if self.started_s is None:
            return f"{self.releases[0][0]} to {PATTERN}: after the upgrade"
        if not self.finished:
            with self._lock:
                where = f"{self._wave}: " if self._wave else ""
                return f"{self._label}: {where}{self._step}"
        if self.error:
            return f"FAILED: {self.error}"
        parts = [_one(r) for r in self.reports]
        on = sum(t == self.good_tree for t in self.trees.values())
        parts.append(f"{on} of {len(self.trees)} sensors on tree {self.good_tree}")
        return "; ".join(parts)

    def report(self) -> dict:
        times = {k: None if t is None else round(t, 2)
                 for k, t in (("started_at_s", self.started_s), ("finished_at_s", self.finished_s))}
        return {"pattern": PATTERN, **times, "releases": self.reports, "good_tree": self.good_tree,
                "trees": self.trees, "failed_calls_during": self.failed_during(), "error": self.error,
                "done": self.finished and not self.problems(), "summary": self.line()}


def _devices(n: int) -> str:
    return f"{n} device{'' if n == 1 else 's'}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))


def _one(r: dict) -> str:
    """How one release's rollout went, in a clause."""
    waves = r["waves"]
    if r["outcome"] == "done":
        done = sum(d["state"] == "done" for w in waves for d in w)
        sizes = ", ".join(str(len(w)) for w in waves)
        skipped = "".join(f", {s['node']} skipped ({s['why']})" for s in r["skipped"])
        return (f"{r['release']} done in {r['seconds']:.1f} s: {len(waves)} waves ({sizes}), "
                f"{_devices(done)} done{skipped}")
    canary = _canary(r)
    if r["outcome"] == "aborted" and canary is not None:
        untouched = _devices(sum(len(w) for w in waves[1:]))
        return (f"{r['release']} aborted at the canary {canary['node']} ({canary['reason']}), "
                f"{canary['state'].replace('_', ' ')}; {untouched} not touched")
    return f"{r['release']} {r['outcome']}: {r['reason']}"


def _canary(r: dict) -> dict | None:
    return r["waves"][0][0] if r["waves"] and r["waves"][0] else None
