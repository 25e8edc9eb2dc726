"""Service contracts: a name, an API version "major.minor", methods with typed arguments and defaults.

Servers check every call against the contract and clients check before sending; a break is a typed
ContractError (InvalidArguments, NoSuchMethod, UnsupportedVersion), as compatible as oslo.messaging's.
"""

from spoolbus import errors

_REQUIRED = object()


def parse_version(text):
    """(major, minor) from "major.minor"; UnsupportedVersion for anything else."""
    if isinstance(text, str):
        dot = text.find(".")
        if 0 < dot < len(text) - 1:
            major, minor = text[:dot], text[dot + 1 :]
            if major.isdigit() and minor.isdigit():
                return int(major), int(minor)
    raise errors.UnsupportedVersion("API version must be a string 'major.minor', got %r" % (text,))


def _type_name(t):
    if t is None:
        return "any"
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return t.__name__


def _type_ok(value, t):
    if t is None:
        return True
    if isinstance(t, tuple):
        for x in t:
            if _type_ok(value, x):
                return True
        return False
    vt = type(value)
    if t is float:
        return vt is float or vt is int
    if t is bytes:
        return vt is bytes or vt is bytearray
    if t is list:
        return vt is list or vt is tuple
    return vt is t


class Service:
    """A service's contract. Declare methods with `method`:

        THERMO = Service("thermo", "1.3")
        THERMO.method("read", ("sensor", str), ("unit", str, "C", "1.2"))
        THERMO.method("calibrate", ("offset", float), since="1.3")

    Each argument is (name, type), (name, type, default) or (name, type, default, since); a type is
    str, int, float (accepts int), bool, bytes, list, dict, type(None), a tuple of those, or None
    for any. `since` is the API version that introduced the method or argument (default "1.0");
    arguments added in a minor version must have a default, so older clients stay valid.
    """

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.major, self.minor = parse_version(version)
        self._methods = {}  # name -> (since (major, minor), ((arg, type, default, since), ...))

    def method(self, name, *args, since="1.0"):
        """Declare a method; returns the service, so declarations can be chained."""
        specs = []
        for a in args:
            default = a[2] if len(a) > 2 else _REQUIRED
            asince = parse_version(a[3]) if len(a) > 3 else (0, 0)
            specs.append((a[0], a[1], default, asince))
        self._methods[name] = (parse_version(since), tuple(specs))
        return self

    def methods(self):
        """Names of the declared methods."""
        return list(self._methods)

    def accepts(self, version):
        """Whether this service, at its version, serves calls targeted at `version` (same major, minor <=)."""
        major, minor = parse_version(version)
        return major == self.major and minor <= self.minor

    def _spec(self, method):
        spec = self._methods.get(method)
        if spec is None:
            raise errors.NoSuchMethod("service %r (API %s) has no method %r; it has: %s"
                                      % (self.name, self.version, method, ", ".join(sorted(self._methods))))
        return spec

    def check_call(self, method, args, version):
        """Server side: the arguments to run `method` with (defaults filled in), or a ContractError.

        The call must declare a version this service serves, and no older one than the method and the
        arguments given need (what call_version says): a 1.0 call cannot use what 1.1 added.
        """
        if version is None:
            version = "1.0"
        v = parse_version(version)
        if v[0] != self.major or v[1] > self.minor:
            self._unsupported("%s serves API %s (calls for %d.0 to %s); the call asked for %s"
                              % (self.name, self.version, self.major, self.version, version))
        since, specs = self._spec(method)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise errors.InvalidArguments("%s.%s: arguments must be a map of name to value, got %s"
                                          % (self.name, method, type(args).__name__))
        out = {}
        known = 0
        for name, t, default, asince in specs:
            if name in args:
                known += 1
                value = args[name]
                self._check_type(method, name, value, t)
                out[name] = float(value) if t is float and type(value) is int else value
                if asince > since:
                    since = asince
            elif default is _REQUIRED:
                raise errors.InvalidArguments("%s.%s: missing argument %r" % (self.name, method, name))
            else:
                out[name] = default
        if known != len(args):
            self._unknown(method, args, specs)
        if since > v:
            self._unsupported("%s.%s with these arguments needs API %d.%d; the call declares %s"
                              % (self.name, method, since[0], since[1], version))
        return out

    def _unsupported(self, message):
        e = errors.UnsupportedVersion(message)
        e.details = {"version": self.version}
        raise e

    def call_version(self, method, args):
        """Client side: check the arguments and return the lowest version (major, minor) the call needs."""
        since, specs = self._spec(method)
        if not isinstance(args, dict):
            raise errors.InvalidArguments("%s.%s: arguments must be a dict" % (self.name, method))
        known = 0
        for name, t, default, asince in specs:
            if name in args:
                known += 1
                self._check_type(method, name, args[name], t)
                if asince > since:
                    since = asince
            elif default is _REQUIRED:
                raise errors.InvalidArguments("%s.%s: missing argument %r" % (self.name, method, name))
        if known != len(args):
            self._unknown(method, args, specs)
        return since

    def _check_type(self, method, name, value, t):
        if not _type_ok(value, t):
            raise errors.InvalidArguments("%s.%s: argument %r must be %s, got %s"
                                          % (self.name, method, name, _type_name(t), type(value).__name__))

    def _unknown(self, method, args, specs):
        names = [s[0] for s in specs]
        extra = [str(k) for k in args if k not in names]
        raise errors.InvalidArguments("%s.%s: unknown argument(s) %s; it takes: %s"
                                      % (self.name, method, ", ".join(extra), ", ".join(names)))
