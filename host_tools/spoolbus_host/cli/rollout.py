"""`spoolbus rollout APP --devices PATTERN`: a staged rollout over the bus (rollout/run.py): a canary, then
growing waves; the first wave that fails past the abort rule stops it and is rolled back.

Progress goes to stderr a line per step; the report to stdout (JSON with --json). Killed and started again
with the same --state file, a rollout goes on where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from spoolbus.transport.mqtt_client import MQTTConnectionError

from spoolbus_host.cli import mqtt_options, options

_fail = functools.partial(options.fail, "rollout")


@options.argtype
def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise ValueError(f"{text!r} is not a percentage from 0 to 100; give e.g. 20")
    return value


@options.argtype
def _pattern(text: str) -> str:
    if not text or text.count("/") != 1 or any(c in text for c in "+#"):
        raise ValueError(f"{text!r} is not a device pattern bridge/device (shell-style * ? [..], no MQTT "
                         "wildcards); give e.g. 'gw*/sensor-*'")
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="roll a release out to many boards over the bus, in waves",
                       description="Deploy APP over the bus to the online devices matching --devices: a "
                       "canary, then growing waves; stop and roll the wave back on failure.")
    p.add_argument("app", type=Path, help="application directory (main.py and release.toml)")
    p.add_argument("--devices", type=_pattern, action="append", required=True, metavar="PATTERN",
                   help="bridge/device names to update, shell-style, e.g. 'gw*/sensor-*' (repeatable)")
    p.add_argument("--waves", default=None, help="cumulative wave sizes, counts or percentages "
                   "(default 1,10%%,50%%,100%%: a canary, then 10%%, half, all)")
    p.add_argument("--max-failed", type=_percent, default=0.0, metavar="PCT",
                   help="abort when more than PCT percent of a wave fails (default 0; the canary may "
                   "never fail)")
    p.add_argument("--parallel", type=options.positive_int("4"), default=4,
                   help="devices of a wave updated at once (default 4)")
    p.add_argument("--allow-breaking", action="store_true",
                   help="roll out a release whose API versions would break the fleet's callers")
    p.add_argument("--state", type=Path, default=Path("spoolbus-rollout.sqlite"),
                   help="the rollout's state file (default ./spoolbus-rollout.sqlite); run the same "
                   "command again to continue a rollout that was stopped")
    p.add_argument("--dry-run", action="store_true", help="show the plan: waves, devices, their trees")
    p.add_argument("--timeout", type=options.seconds, default=5.0,
                   help="seconds to wait for each reply of a board (default 5)")
    p.add_argument("--boot-timeout", type=options.seconds, default=90.0,
                   help="seconds a board has to come back with the new tree confirmed (default 90)")
    p.add_argument("--mpy-cross", help="mpy-cross to compile with (default: the project's own build)")
    mqtt_options.add_key_option(p)
    mqtt_options.add_broker_options(p)  # and --json
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from spoolbus_host.rollout import plan
    from spoolbus_host.rollout.run import Options, Rollout, RolloutError
    from spoolbus_host.rollout.state import State, StateError

    if not (args.app / "main.py").is_file():
        return _fail(f"{args.app} has no main.py; give the application directory")
    mpy_cross = args.mpy_cross
    if mpy_cross is not None and not (os.path.isfile(mpy_cross) and os.access(mpy_cross, os.X_OK)):
        return _fail(f"--mpy-cross {mpy_cross} is not an executable file; give the path of mpy-cross")
    try:
        plan.parse_waves(args.waves or plan.DEFAULT_WAVES)
        plan.read_release(args.app)
        state = State(args.state)
    except (plan.PlanError, StateError) as e:
        return _fail(str(e))
    keys = args.key_file
    parallel = 1 if keys else args.parallel  # one signing host name: one node does every call
    opts = Options(waves=args.waves or plan.DEFAULT_WAVES, parallel=parallel, max_failed=args.max_failed,
                   allow_breaking=args.allow_breaking, dry_run=args.dry_run, timeout=args.timeout,
                   boot_timeout=args.boot_timeout, mpy_cross=mpy_cross)
    shared: list = []

    def connect(k: int):
        if keys:
            if not shared:
                shared.append(_node(args, keys, 0))
            return shared[0]
        return _node(args, None, k)

    ro = Rollout(connect, args.app, args.devices, state, opts, on_event=_Progress(sys.stderr))
    try:
        report = ro.run()
    except (RolloutError, plan.PlanError, StateError) as e:
        return _fail(str(e))
    except ValueError as e:  # a key file that does not fit
        return _fail(str(e))
    except MQTTConnectionError as e:
        return mqtt_options.unreachable("rollout", e)
    finally:
        for n in shared:
            n.close()
        state.close()
    d = report.as_dict()
    print(json.dumps(d) if args.json else _summary(d))
    return 0 if report.outcome in ("done", "planned") else 1


def _node(args: argparse.Namespace, keys: dict[str, bytes] | None, k: int):
    """Node k of the rollout on the broker: host/rollout-<pid>-<k>, or the key file's host name. Node 0
    sees every bridge's statuses (the fleet view)."""
    from spoolbus.node import Node

    if keys:
        hosts = [n for n in keys if n.startswith("host/")]
        if len(hosts) != 1:
            raise ValueError(f"--key-file must hold one host/... key, the rollout's own name; it holds "
                             f"{', '.join(sorted(keys))}")
        name = hosts[0]
    else:
        name = f"host/rollout-{os.getpid()}-{k}"
    bridge, _, device = name.partition("/")
    t = mqtt_options.transport(args, bridge, device, watch="+" if k == 0 or keys else None,
                               client_id=f"{name}-{os.getpid()}" if keys else None)  # a key's name is shared
    return Node(name, t, keys=keys, require=bool(keys), timeout=args.timeout, max_pending=8,
                max_message=65536)


class _Progress:
    """One line on stderr per step: the wave, the device and what it is now, the counts of all."""

    def __init__(self, stream):
        self.stream = stream
        self.wave = ""

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == "plan":
            waves = " | ".join(f"{len(w)}: {' '.join(w)}" for w in e["waves"])
            line = f"plan for tree {e['tree']}: {len(e['waves'])} waves [{waves}]"
            if e["skipped"]:
                line += "; skipped " + ", ".join(f"{s['node']} ({s['why']})" for s in e["skipped"])
        elif kind == "resume":
            line = f"continuing the rollout of tree {e['tree']} ({e['devices']} devices)"
        elif kind == "wave":
            self.wave = f"wave {e['wave'] + 1}/{e['waves']}"
            line = f"{self.wave}: {e['size']} devices, {e['todo']} to update"
        elif kind == "device":
            counts = ", ".join(f"{n} {s}" for s, n in sorted(e["counts"].items()))
            why = f" ({e['reason']})" if e.get("reason") else ""
            line = f"{self.wave}: {e['node']} {e['state']}{why} [{counts}]"
        elif kind == "rollback":
            line = f"aborting: rolling wave {e['wave'] + 1} back"
        else:
            return
        print(f"spoolbus rollout: {line}", file=self.stream, flush=True)


def _summary(d: dict) -> str:
    lines = []
    for i, w in enumerate(d["waves"], 1):
        for dev in w:
            t = f" in {dev['seconds']} s" if dev.get("seconds") is not None else ""
            why = f": {dev['reason']}" if dev.get("reason") else ""
            lines.append(f"wave {i}  {dev['node']:<24} {dev['state']}{t}{why}")
    for s in d["skipped"]:
        lines.append(f"skipped {s['node']}: {s['why']}")
    head = {"done": f"rolled out tree {d['tree']}", "planned": f"plan for tree {d['tree']} (dry run)",
            "aborted": f"rollout of tree {d['tree']} aborted: {d['reason']}"}[d["outcome"]]
    if d["outcome"] == "done" and d.get("reason"):
        head += f": {d['reason']}"
    if d.get("upgrade_s"):
        head += f" (per device p50 {d['upgrade_s']['p50']} s, p99 {d['upgrade_s']['p99']} s)"
    return "\n".join([head] + lines)
