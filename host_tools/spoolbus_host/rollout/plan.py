"""The decisions of a staged rollout, without I/O: which devices, in which waves, whether a release
breaks the fleet's callers, whether a wave's failures stop the rollout (docs/operations.md, "Rollout").
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from pathlib import Path

from spoolbus import contract, errors

from spoolbus_host.toml_checks import TomlFile

DEFAULT_WAVES = "1,10%,50%,100%"
RELEASE_FILE = "release.toml"
_RELEASE_EXAMPLE = 'a [services] table of name = "API version", e.g. app = "1.1"'


class PlanError(ValueError):
    """A rollout that cannot be planned: the message names the problem and the fix."""


@dataclass(frozen=True)
class Release:
    """What a release's node serves: {service: "major.minor"}, from APP/release.toml."""

    services: dict[str, str]


def read_release(app: Path) -> Release:
    """APP/release.toml's [services] table; PlanError where it is missing or wrong."""
    path = Path(app) / RELEASE_FILE
    if not path.is_file():
        raise PlanError(f"{path}: no such file; a rollout checks the API versions a release declares: "
                        f"write it: {_RELEASE_EXAMPLE}")
    f = TomlFile(path, PlanError, "the release's declaration", _RELEASE_EXAMPLE)
    table = f.table(f.read(), "services")
    if not table:
        raise PlanError(f"{path}: [services] is empty; name each service the release serves: "
                        f"{_RELEASE_EXAMPLE}")
    services = {}
    for name, version in table.items():
        f.typed(f"services.{name}", version, str)
        try:
            contract.parse_version(version)
        except errors.UnsupportedVersion:
            raise PlanError(f"{path}: services.{name} = {version!r} is not an API version MAJOR.MINOR, "
                            'e.g. "1.1"') from None
        services[name] = version
    return Release(services)


def parse_waves(text: str) -> list[tuple[int, bool]]:
    """"1,10%,50%,100%" as [(1, False), (10, True), ...]: each wave's cumulative size, a count of
    devices or a percentage of them; PlanError unless they grow and end at 100%."""
    steps = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(%?)\s*", part)
        if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(1)) > 100):
            raise PlanError(f"--waves {text!r}: {part.strip()!r} is not a device count or a percentage "
                            f"from 1% to 100%; give e.g. {DEFAULT_WAVES}")
        steps.append((int(m.group(1)), bool(m.group(2))))
    if steps[-1] != (100, True):
        raise PlanError(f"--waves {text!r} must end at 100% (every selected device); give e.g. "
                        f"{DEFAULT_WAVES}")
    return steps


def wave_sizes(n: int, steps: list[tuple[int, bool]]) -> list[int]:
    """The sizes of the waves over `n` devices: each step's cumulative target (a percentage rounds up),
    minus what the waves before it took; steps that add no device are left out."""
    sizes = []
    done = 0
    for value, percent in steps:
        upto = min(n, math.ceil(n * value / 100) if percent else value)
        if upto > done:
            sizes.append(upto - done)
            done = upto
    return sizes


def select(names: list[str], patterns: list[str]) -> list[str]:
    """The node names (bridge/device) that match any of the shell-style patterns, sorted."""
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def breaking(release: Release, fleet: dict[str, dict[str, str]]) -> list[str]:
    """How the release would break the callers of what the fleet runs: for each service a selected device
    serves today, a new major version or a lower minor one (its callers may use the higher one).

    fleet: {node: {service: "major.minor"}} from the devices' hellos.
    """
    problems = []
    for service in sorted({s for services in fleet.values() for s in services}):
        running = sorted({v[service] for v in fleet.values() if service in v}, key=contract.parse_version)
        new = release.services.get(service)
        if new is None:
            problems.append(f"service {service} (served today at {', '.join(running)}) is not in the release")
            continue
        nmaj, nmin = contract.parse_version(new)
        for v in running:
            maj, mi = contract.parse_version(v)
            if maj != nmaj:
                problems.append(f"{service} {v} -> {new} changes the major version")
            elif nmin < mi:
                problems.append(f"{service} {v} -> {new} lowers the minor version")
    return problems


def advertises(release: Release, services: dict[str, str] | None) -> str | None:
    """Why a device's hello does not advertise the release's services, or None when it does."""
    got = services or {}
    wrong = [f"{s} {got.get(s, 'missing')} (the release declares {v})"
             for s, v in sorted(release.services.items()) if got.get(s) != v]
    return "its hello advertises " + ", ".join(wrong) if wrong else None


def aborts(wave: int, size: int, failed: int, max_failed: float) -> bool:
    """Whether a wave with `failed` of `size` devices failed stops the rollout: any failure of the canary
    (wave 0), else more than `max_failed` percent of the wave."""
    if failed == 0:
        return False
    return wave == 0 or failed * 100 > max_failed * size
