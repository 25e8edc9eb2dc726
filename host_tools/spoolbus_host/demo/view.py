"""The demo's screens: a live view redrawn once a second on a terminal (one plain line otherwise), and
the final summary. Pure formatting: everything shown comes in as a `Frame` or the summary dict.
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from dataclasses import dataclass
from typing import TextIO

NOTES = 4  # progress lines kept under the live view on a terminal


@dataclass
class Frame:
    """What the live view shows at one moment."""

    elapsed: float
    seconds: float
    devices: list[dict]  # name, board, link, online, services {name: version}
    rate: float  # messages a second through the broker and the bridge
    traffic: dict  # Traffic.snapshot()
    upgrade: str  # one line on the rolling upgrade
    rollout: str  # one line on the staged rollout: its wave and its devices by state


def _services(services: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(services.items())) or "-"


def lines(f: Frame, notes: list[str]) -> list[str]:
    t = f.traffic
    out = [f"spoolbus demo  {f.elapsed:5.1f} s of {f.seconds:.0f} s", "",
           f"  {'device':<11} {'board':<30} {'link':<11} {'online':<7} services (from hello)"]
    for d in f.devices:
        out.append(f"  {d['name']:<11} {d['board']:<30} {d['link']:<11} {'yes' if d['online'] else 'no':<7} "
                   f"{_services(d['services'])}")
    out += ["", f"  messages/s {f.rate:6.0f}   calls ok {t['calls_ok']:5d}  failed {t['calls_failed']}   "
                f"casts {t['casts']:4d}   notifications {t['notifications']:4d}", "",
            f"  {'latency at the host':<40} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8}"]
    for name, m in t["methods"].items():
        out.append(f"  {name:<40} {m['calls']:>6} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f}")
    out += ["", f"  upgrade: {f.upgrade}", f"  rollout: {f.rollout}"]
    return out + [f"    {n}" for n in notes]


def plain(f: Frame) -> str:
    """One line a second for logs and pipes."""
    t = f.traffic
    online = sum(1 for d in f.devices if d["online"])
    sensor = next((d["services"].get("sensor", "?") for d in f.devices if "sensor" in d["services"]), "?")
    return (f"t={f.elapsed:4.1f}s devices {online}/{len(f.devices)} online  msg/s {f.rate:.0f}  "
            f"calls {t['calls_ok']} ok {t['calls_failed']} failed  casts {t['casts']}  "
            f"notifications {t['notifications']}  sensor API {sensor}  upgrade: {f.upgrade}  "
            f"rollout: {f.rollout}")


class LiveView:
    """Redraws in place on a terminal; prints plain lines elsewhere. `note` may come from any thread."""

    def __init__(self, out: TextIO, redraw: bool):
        self.out = out
        self.redraw = redraw
        self._drawn = 0
        self._notes: deque[str] = deque(maxlen=NOTES)
        self._lock = threading.Lock()

    def note(self, text: str) -> None:
        """A progress line: printed at once elsewhere; on a terminal the last few show under the view
        (a line printed between two redraws would be drawn over)."""
        with self._lock:
            if self.redraw:
                self._notes.append(text)
            else:
                print(text, file=self.out, flush=True)

    def show(self, f: Frame) -> None:
        with self._lock:
            if not self.redraw:
                print(plain(f), file=self.out, flush=True)
                return
            width = shutil.get_terminal_size().columns
            text = [line[: width - 1] for line in lines(f, list(self._notes))]  # a wrapped line breaks it
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.out.write(up + "\x1b[J" + "\n".join(text) + "\n")
            self.out.flush()
            self._drawn = len(text)


def _device(d: dict) -> str:
    took = f" in {d['seconds']:.1f} s" if d.get("seconds") is not None else ""
    why = f" ({d['reason']})" if d.get("reason") else ""
    return f"{d['node']} {d['state']}{took}{why}"


def summary_text(s: dict) -> str:
    """The final summary for people (the same facts as --json)."""
    verdict = "OK" if s["ok"] else "FAILED"
    out = ["", f"spoolbus demo summary: {verdict} after {s['seconds']:.1f} s of traffic "
           f"(start-up {s['startup_s']:.1f} s)"]
    for name, d in s["devices"].items():
        out.append(f"  {name:<11} {d['board']:<30} {d['link']:<11} deployed in {d['deploy_s']:.1f} s  "
                   f"{_services(d['services'])}")
    t = s["traffic"]
    out.append(f"  calls {t['calls_ok']} ok, {t['calls_failed']} failed; casts {t['casts']}; notifications "
               f"{t['notifications']} ({', '.join(f'{k} {v}' for k, v in sorted(t['events'].items()))})")
    out.append(f"  messages through broker and bridge: {s['messages']}  (bridge: "
               f"{', '.join(f'{k} {v}' for k, v in sorted(s['bridge'].items()))})")
    c = s["controller"]
    out.append(f"  controller (serial board -> spool boards, routed by the bridge): {c.get('ok', 0)} rounds "
               f"ok, {c.get('failed', 0)} failed; logger wrote {s['logger'].get('lines', 0)} lines")
    for name, m in t["methods"].items():
        out.append(f"  {name:<40} {m['calls']:>6} calls  p50 {m['p50_ms']:6.1f} ms  "
                   f"p99 {m['p99_ms']:6.1f} ms")
    u = s["upgrade"]
    out.append(f"  rolling upgrade: {u['summary']}")
    r = s["rollout"]
    out.append(f"  staged rollout to {r['pattern']}: {r['summary']}")
    for rel in r["releases"]:
        for i, wave in enumerate(rel["waves"], 1):
            out.append(f"    {rel['release']} wave {i}: " + ", ".join(_device(d) for d in wave))
    for e in s["error_list"][:10]:
        out.append(f"  error: {e}")
    out.append(f"  stopped everything: {len(s['processes'])} processes, "
               f"{len(s['left_running'])} left running; work directory removed")
    return "\n".join(out)
