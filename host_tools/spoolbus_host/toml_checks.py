"""Reading a TOML settings file and checking its tables and key types, for every file the host reads.

Board profiles and the bridge's configuration share one parser and one wording: each mistake raises
the caller's error type with the file, the key and what was wrong, never a traceback from the parser.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has no tomllib; tomli is the same parser (a conditional dependency)
    import tomli as tomllib


class TomlFile:
    """One settings file: `read()` its data, then `table`, `typed` and `get` check it; errors are `error`."""

    def __init__(self, path: Path, error: type[Exception], what: str = "it", example: str = "") -> None:
        self.path = path
        self.error = error
        self.what = what  # what the file is, for "cannot read ...", e.g. "the bridge configuration"
        self.example = example  # a file to model one on, for a file that is not text

    def read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except OSError as e:
            raise self.error(f"{self.path}: cannot read {self.what}: {e.strerror}") from None
        except UnicodeDecodeError:
            model = f" ({self.example})" if self.example else ""
            raise self.error(f"{self.path}: not a text file; give a TOML file{model}") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise self.error(f"{self.path}: not valid TOML: {e}") from None

    def table(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        """`data[name]` (an empty table where it is missing), which must be a table."""
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(f"{self.path}: [{name}] must be a table")
        return value

    def typed(self, key: str, value: Any, kind: type) -> Any:
        """`value` of `key`, of type `kind`: an integer serves where a float is asked, a bool is no int."""
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            got = type(value).__name__
            raise self.error(f"{self.path}: {key!r} must be of type {kind.__name__}, not {got}")
        return value

    def get(self, data: dict[str, Any], table: str | None, key: str, kind: type, default: Any = ...) -> Any:
        """The value of `table.key` (`key` at the top with no table), checked; without a default, required."""
        where = data if table is None else self.table(data, table)
        full = key if table is None else f"{table}.{key}"
        if key not in where:
            if default is ...:
                raise self.error(f"{self.path}: missing key {full!r}")
            return default
        return self.typed(full, where[key], kind)
