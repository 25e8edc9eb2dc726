"""argparse types the subcommands share: each refuses a bad value with one line that names the fix.

A type raises argparse.ArgumentTypeError, so argparse prints the usage and `error: argument --x: ...`
and exits 2 before the command starts; the checks themselves raise ValueError, for settings that come
from elsewhere (a bridge's TOML file) and are checked at run time.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from spoolbus.names import check_name

T = TypeVar("T")


def argtype(check: Callable[[str], T]) -> Callable[[str], T]:
    """`check` (raising ValueError) as an argparse type= whose error line is the ValueError's text."""

    def parse(text: str) -> T:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


@argtype
def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r} is not a number of seconds above 0; give e.g. 5 or 0.5")
    return value


def positive_int(example: str) -> Callable[[str], int]:
    """An argparse type for a whole number above 0; the error suggests `example`."""

    @argtype
    def positive_int(text: str) -> int:
        if not text.strip().isdigit() or int(text) < 1:
            raise ValueError(f"{text!r} is not a whole number above 0; give e.g. {example}")
        return int(text)

    return positive_int


def topic_level(text: str, what: str, example: str) -> str:
    """One MQTT topic level: not empty, no '/', no wildcard '+' or '#'."""
    if not text or any(c in text for c in "/+#"):
        raise ValueError(f"{what} {text!r} must be one MQTT topic level (not empty, no '/', '+' or '#'); "
                         f"give e.g. {example}")
    return text


@argtype
def prefix(text: str) -> str:
    return topic_level(text, "prefix", "spoolbus")


def node_name(text: str) -> str:
    """`text` if it names one node as bridge/device, each part a name every transport carries
    (check_name); ValueError naming the part that is not and the rule."""
    bridge, sep, device = text.partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not a node; give it as bridge/device, e.g. gw1/sensor-1")
    try:
        check_name(bridge)
        check_name(device)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a node; give it as bridge/device: {e}") from None
    return text


@argtype
def node(text: str) -> str:
    return node_name(text)


@argtype
def method(text: str) -> str:
    dot = text.rfind(".")
    if not 0 < dot < len(text) - 1:
        raise ValueError(f"{text!r} is not a method; give it as service.method, e.g. thermo.read")
    return text


@argtype
def api_version(text: str) -> str:
    major, sep, minor = text.partition(".")
    if not (sep and major.isdigit() and minor.isdigit()):
        raise ValueError(f"{text!r} is not an API version; give it as major.minor, e.g. 1.0")
    return text


@argtype
def key_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r} is not key=value; give e.g. sensor=t1 or scale=2")
    return text


def readable_file(text: str, what: str) -> str:
    """An existing file (or device) that is not a directory; ValueError naming `what` it should be."""
    if os.path.isdir(text):
        raise ValueError(f"{text} is a directory; give {what}")
    if not os.path.exists(text):
        raise ValueError(f"{text}: no such file; give {what}")
    if not os.access(text, os.R_OK):
        raise ValueError(f"{text}: permission denied; give {what} that this user can read")
    return text


def fail(command: str, message: str) -> int:
    """Say in one line on stderr why `spoolbus COMMAND` cannot go on; returns the exit status, 2."""
    print(f"spoolbus {command}: {message}", file=sys.stderr)
    return 2
