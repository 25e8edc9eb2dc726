"""Firmware builds: MicroPython with spoolbus frozen in, for a board profile, cached by content.

The same MicroPython source as the plain unix build (.cache/micropython-VERSION/src). The result is
keyed by a hash of everything that goes into it, so an unchanged tree is a cache hit and never rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from spoolbus_host.boards.profiles import BUILDABLE_PORTS, BoardProfile
from spoolbus_host.paths import CACHE, FIRMWARE, REPO, RUNTIME

# Called with (fraction done 0..1 or None when unknown, a short description of the step), as
# spoolbus_host.progress.Progress.step is.
StepReport = Callable[[float | None, str], None]


class FirmwareBuildError(RuntimeError):
    """A firmware build that failed; the message ends with the tail of the build log."""


def cache_root(profile: BoardProfile) -> Path:
    return CACHE / f"micropython-{profile.micropython}"


def source_dir(profile: BoardProfile) -> Path:
    return cache_root(profile) / "src"


def _manifest(profile: BoardProfile, variant: str) -> Path:
    """The frozen manifest of a build: the variant's ("" is firmware/manifest.py, "deployable"
    firmware/deployable/manifest.py, each freezing a board entry main.py), with the profile's features
    included."""
    path = FIRMWARE / variant / "manifest.py" if variant else FIRMWARE / "manifest.py"
    if not path.is_file():
        raise FirmwareBuildError(f"no firmware variant {variant!r}: {path} is missing")
    if not profile.features:
        return path
    combined = CACHE / "firmware" / f"manifest-{_label(profile, variant)}.py"
    lines = [f"include({str(path)!r})"]
    lines += [f"include({str(FIRMWARE / 'features' / f / 'manifest.py')!r})" for f in profile.features]
    combined.parent.mkdir(parents=True, exist_ok=True)
    head = "# Written by spoolbus_host.boards.firmware: the variant and the profile's features.\n"
    combined.write_text(head + "\n".join(lines) + "\n")
    return combined


def _label(profile: BoardProfile, variant: str) -> str:
    """The name of a build's directories: the board, and "+variant" for a variant."""
    return f"{profile.name}+{variant}" if variant else profile.name


def build_key(profile: BoardProfile, variant: str = "") -> str:
    """Hash of the MicroPython version, the profile, the firmware and runtime sources, and this recipe."""
    h = hashlib.sha256(variant.encode())
    files = [profile.path, Path(__file__)]
    files += sorted(p for p in FIRMWARE.rglob("*") if p.is_file())
    files += sorted(RUNTIME.rglob("*.py"))
    h.update(profile.micropython.encode())
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def artifact_path(profile: BoardProfile, variant: str = "") -> Path:
    """Where the firmware of the current sources lives (it may not be built yet)."""
    out = CACHE / "firmware" / f"{_label(profile, variant)}-{build_key(profile, variant)}"
    return out / profile.artifact


def ensure_built(
    profile: BoardProfile, progress: StepReport | None = None, variant: str = ""
) -> tuple[Path, bool]:
    """(firmware path, True if it came from the cache), building it first if needed.

    `variant` picks another board entry under firmware/ (see `_manifest`); "" is the production one.
    """
    target = artifact_path(profile, variant)
    if target.is_file():
        return target, True
    lock = CACHE / "firmware" / f"build-{_label(profile, variant)}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # one build a board at a time (tests run in parallel processes)
        if target.is_file():
            return target, True  # another process built it while we waited
        build(profile, target, progress or (lambda f, s: None), variant)
    return target, False


def _fetch_source(profile: BoardProfile, progress: StepReport) -> Path:
    src = source_dir(profile)
    if not (src / "py" / "mpconfig.h").is_file():
        progress(None, "fetching MicroPython source")
        _run(["bash", str(REPO / "scripts" / "fetch-micropython.sh")], cache_root(profile) / "fetch.log",
             progress, None, env={"MICROPYTHON_VERSION": profile.micropython})
    if not (src / "mpy-cross" / "build" / "mpy-cross").is_file():
        progress(None, "building mpy-cross")
        _run(["make", "-C", str(src / "mpy-cross"), f"-j{os.cpu_count() or 2}"],
             cache_root(profile) / "build-mpy-cross.log", progress, None)
    return src


def _qemu_tree(profile: BoardProfile, src: Path) -> Path:
    """A tree that shares the MicroPython source except ports/qemu, a copy with firmware/qemu's files.

    The qemu port runs no boot script and lacks time, select and binary stdio; our main.c,
    mphalport.c, mpconfigport.h, Makefile and linker script (firmware/qemu/) add them; the shared
    source stays untouched.
    """
    tree = CACHE / "firmware" / f"tree-{profile.micropython}"
    port = tree / "ports" / "qemu"
    port.parent.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        link = tree / entry.name
        if entry.name != "ports" and not link.exists():
            link.symlink_to(entry)
    if not port.is_dir():
        shutil.copytree(src / "ports" / "qemu", port, ignore=shutil.ignore_patterns("build-*"))
    overlay = FIRMWARE / "qemu"
    for f in sorted(p for p in overlay.rglob("*") if p.is_file()):
        dest = port / f.relative_to(overlay)
        if not dest.is_file() or dest.read_bytes() != f.read_bytes():
            shutil.copyfile(f, dest)
    return port


# The C compiler of each qemu port architecture (ports/qemu/Makefile's CROSS_COMPILE) and the Debian
# packages with it and its C library (scripts/setup.sh installs them).
_CROSS_COMPILERS = {
    "arm": ("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
    "riscv32": ("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"),
}


def _check_qemu_board(profile: BoardProfile, port: Path) -> None:
    """Refuse in one line a board the qemu port lacks or whose cross compiler is missing (make's own
    errors are a page of log)."""
    mk = port / "boards" / (profile.mp_board or "") / "mpconfigboard.mk"
    if not mk.is_file():
        boards = ", ".join(sorted(p.parent.name for p in port.glob("boards/*/mpconfigboard.mk")))
        raise FirmwareBuildError(f"{profile.name}: firmware.board {profile.mp_board!r} is not a board of "
                                 f"MicroPython {profile.micropython}'s qemu port ({boards})")
    arch = next((line.split("=", 1)[1].strip() for line in mk.read_text().splitlines()
                 if line.startswith("QEMU_ARCH")), "")
    compiler, packages = _CROSS_COMPILERS.get(arch, ("", ""))
    if compiler and shutil.which(compiler) is None:
        raise FirmwareBuildError(f"{profile.name}: {compiler} is not installed: run `make setup` "
                                 f"(Debian packages {packages})")


def _empty_micropython_lib() -> Path:
    """Debian's source has no micropython-lib; we freeze none of it, but the build checks it is there."""
    lib = CACHE / "firmware" / "micropython-lib-none"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "README.md").write_text("spoolbus firmware freezes no micropython-lib package.\n")
    return lib


def build(profile: BoardProfile, target: Path, progress: StepReport, variant: str = "") -> None:
    """Build the firmware of `profile` into `target` (an incremental make in a per-board build dir)."""
    if profile.port not in BUILDABLE_PORTS:
        ports = ", ".join(BUILDABLE_PORTS)
        raise FirmwareBuildError(f"{profile.name}: spoolbus builds firmware for the {ports} ports only; "
                                 f"build {profile.port} firmware with its own toolchain")
    started = time.monotonic()
    src = _fetch_source(profile, progress)
    label = _label(profile, variant)
    build_dir = CACHE / "firmware" / f"build-{label}"
    make_vars = dict(profile.make_vars)
    make_vars["FROZEN_MANIFEST"] = str(_manifest(profile, variant))
    make_vars["BUILD"] = str(build_dir)
    make_vars["MPY_LIB_DIR"] = str(_empty_micropython_lib())
    if profile.port == "unix":
        port_dir = src / "ports" / "unix"
        built = build_dir / "micropython"
    else:
        port_dir = _qemu_tree(profile, src)
        _check_qemu_board(profile, port_dir)
        make_vars["BOARD"] = profile.mp_board or ""
        make_vars["MICROPY_HEAP_SIZE"] = str(profile.heap)
        built = build_dir / "firmware.elf"
    _clean_if_config_changed(profile, build_dir)
    # Building means the sources differ from every cached build, but makemanifest recompiles a frozen
    # module only when its source is newer than its .mpy: a checkout of older sources would be skipped.
    shutil.rmtree(build_dir / "frozen_mpy", ignore_errors=True)
    jobs = os.cpu_count() or 2
    cmd = ["make", "-C", str(port_dir), f"-j{jobs}"] + [f"{k}={v}" for k, v in sorted(make_vars.items())]
    log = build_dir.parent / f"build-{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    estimate = _previous_line_count(log)
    _run(cmd, log, progress, estimate)
    if not built.is_file():
        raise FirmwareBuildError(f"make finished but {built} is missing; see {log}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(built, tmp)
    tmp.chmod(0o755)
    info = {"board": profile.name, "variant": variant, "key": build_key(profile, variant),
            "seconds": round(time.monotonic() - started, 1), "command": cmd}
    (target.parent / "build.json").write_text(json.dumps(info, indent=1))
    tmp.replace(target)
    for old in target.parent.parent.glob(f"{label}-*"):
        if old != target.parent and old.is_dir():  # builds of older sources
            shutil.rmtree(old, ignore_errors=True)
    progress(1.0, f"built {target.relative_to(REPO)}")


def _clean_if_config_changed(profile: BoardProfile, build_dir: Path) -> None:
    """Start from an empty build dir when C sources, config or profile changed (stale qstrs otherwise);
    Python-only changes rebuild incrementally (frozen content only)."""
    h = hashlib.sha256(profile.path.read_bytes() + Path(__file__).read_bytes())
    for f in sorted(p for p in (FIRMWARE / "qemu").rglob("*") if p.is_file()):
        h.update(f.read_bytes())
    stamp = build_dir / ".spoolbus-config"
    if stamp.is_file() and stamp.read_text() == h.hexdigest():
        return
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    stamp.write_text(h.hexdigest())


def _previous_line_count(log: Path) -> int | None:
    try:
        return max(1, len(log.read_text(errors="replace").splitlines()))
    except OSError:
        return None


def _run(cmd: list[str], log: Path, progress: StepReport, estimate: int | None,
         env: dict[str, str] | None = None) -> None:
    """Run a build step, reporting each output line as progress; raise with the log's tail on failure."""
    lines = 0
    tail: list[str] = []
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env={**os.environ, **(env or {})})
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            lines += 1
            tail = (tail + [line.rstrip()])[-30:]
            step = line.strip()
            if step:
                progress(min(0.99, lines / estimate) if estimate else None, step[:70])
        rc = proc.wait()
    if rc != 0:
        last = "\n".join(tail)
        raise FirmwareBuildError(f"{cmd[0]} failed (exit {rc}); log {log}:\n{last}")
