"""Every `spoolbus` command refuses bad input with one line that names the problem and the fix.

Each case runs `python -m spoolbus_host.cli` as a user would, from a fresh process: missing, malformed and
out-of-range values, a directory where a file goes, a missing file, a file of the wrong kind, a closed
loopback port, a silent broker (a listener that accepts and never answers), a broker that refuses the
login. Each must exit non-zero with exactly one line on stderr (or argparse's usage and its `error:`
line), no traceback, and the expected words. The cases run in parallel threads: the silent ones each
wait out a 5 s CONNACK timeout.
"""

from __future__ import annotations

import hashlib
import os
import pty
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from mosquitto import Broker, free_port, make_certs
from mpproc import ROOT

S = "gw/sensor s.m"  # a well-formed node and method, for the cases about something else

# (argv, exit status, words the message must contain); {names} are filled in by the `world` fixture.
CASES = [
    ("demo --seconds 0", 2, "argument --seconds: '0' is not a number of seconds above 0"),
    ("demo --seconds -1", 2, "is not a number of seconds above 0; give e.g. 5"),
    ("demo --seconds nan", 2, "is not a number of seconds above 0"),
    ("build-firmware", 2, "the following arguments are required: --board"),
    ("build-firmware --board nosuch", 2, "no board profile 'nosuch': known boards are"),
    ("build-firmware --board {badtoml}", 2, "not valid TOML"),
    ("build-firmware --board unix --variant nosuch", 1, "no firmware variant 'nosuch'"),
    ("deploy", 2, "the following arguments are required: app"),
    ("deploy {tmp}/missing --port /dev/null", 2, "has no main.py"),
    ("deploy {app}", 2, "--port is required"),
    ("deploy {app} --port {tmp}/missing", 2, "cannot open {tmp}/missing"),
    ("deploy {app} --port {tmp}", 2, "Is a directory"),
    ("deploy {app} --port {pty}", 2, "no MicroPython REPL answered on {pty}"),
    ("deploy {app} --port /dev/null --baud 0", 2, "argument --baud: '0' is not a whole number above 0"),
    ("deploy {app} --board nosuch", 2, "no board profile 'nosuch'"),
    ("deploy {app} --board raspberry-pi", 2, "needs exactly one of --root DIR or --ssh HOST"),
    ("deploy {app} --board raspberry-pi --root {file}", 2, "--root {file} is not a directory"),
    ("deploy {app} --port /dev/null --mpy-cross {tmp}/missing", 2, "is not an executable file"),
    ("deploy --to gw/a", 2, "the following arguments are required: app (or --rollback)"),
    ("deploy {app} --rollback --port /dev/null", 2, "--rollback takes no APP"),
    ("deploy {app} --port /dev/null --to gw/a", 2, "give one of --port (the serial port) or --to NODE"),
    ("deploy {app} --to gw/", 2, "argument --to: 'gw/' is not a node; give it as bridge/device"),
    ("deploy {app} --to gw/+", 2, "argument --to: 'gw/+' is not a node"),
    ("deploy {app} --to gw/a --baud 9600", 2, "--baud is for a deploy over a serial port"),
    ("deploy {app} --to gw/a --board-dir /flash", 2, "--board-dir is for a deploy over a serial port"),
    ("deploy {app} --to gw/a --no-reset", 2, "--no-reset is for a deploy over a serial port"),
    ("deploy {app} --port /dev/null --window 2", 2, "--window is for a deploy over the bus: add --to NODE"),
    ("deploy {app} --port /dev/null --key-file {keys}", 2, "--key-file is for a deploy over the bus"),
    ("deploy {app} --to gw/a --window 0", 2, "argument --window: '0' is not a whole number above 0"),
    ("deploy {app} --to gw/a --timeout 0", 2, "argument --timeout: '0' is not a number of seconds"),
    ("deploy --rollback --board raspberry-pi --root {tmp}", 2, "--rollback is for MicroPython boards"),
    ("deploy {app} --board raspberry-pi --to gw/a", 2, "installs a Linux service (--root or --ssh): --to"),
    ("deploy {app} --to gw/a --key-file {tmp}/missing", 2, "--key-file: {tmp}/missing: no such file"),
    ("deploy {app} --to gw/a --key-file {file}", 2, "is neither JSON nor TOML"),
    ("deploy {app} --to gw/a --key-file {badkeys}", 2, "the key of gw/b is not hex"),
    ("deploy {app} --to gw/a --key-file {dotkeys}", 2,
     "{dotkeys}: 'gw.1/a' is not a node; give it as bridge/device: 'gw.1' is not a bridge or device name"),
    ("deploy {app} --to gw/a.b", 2, "argument --to: 'gw/a.b' is not a node"),
    ("deploy {app} --to gw/a --key-file {keys}", 2, "--key-file must hold two keys, gw/a's and this host's"),
    ("deploy {app} --to gw/a --broker ''", 2, "argument --broker: broker '' is not HOST:PORT"),
    ("deploy {app} --to gw/a --broker {closed}", 3, "refused; check that the broker runs and that --broker"),
    ("deploy {app} --to gw/a --broker {live} --timeout 0.3", 2, "no reply from gw/a: is it online"),
    ("deploy --rollback --to gw/a --broker {live} --timeout 0.3", 2, "see `spoolbus monitor gw/a`"),
    ("rollout {relapp}", 2, "the following arguments are required: --devices"),
    ("rollout {tmp}/missing --devices 'gw/*'", 2, "{tmp}/missing has no main.py"),
    ("rollout {app} --devices 'gw/*'", 2, "release.toml: no such file; a rollout checks the API versions"),
    ("rollout {badrel} --devices 'gw/*'", 2, "services.app = '1' is not an API version MAJOR.MINOR"),
    ("rollout {relapp} --devices gw", 2, "argument --devices: 'gw' is not a device pattern bridge/device"),
    ("rollout {relapp} --devices 'gw/#'", 2, "no MQTT wildcards"),
    ("rollout {relapp} --devices 'gw/*' --waves 1,x", 2, "'x' is not a device count or a percentage"),
    ("rollout {relapp} --devices 'gw/*' --waves 1,50%", 2, "must end at 100% (every selected device)"),
    ("rollout {relapp} --devices 'gw/*' --waves 0,100%", 2, "'0' is not a device count"),
    ("rollout {relapp} --devices 'gw/*' --max-failed 101", 2, "'101' is not a percentage from 0 to 100"),
    ("rollout {relapp} --devices 'gw/*' --parallel 0", 2, "argument --parallel: '0' is not a whole number"),
    ("rollout {relapp} --devices 'gw/*' --state {tmp}", 2, "rollout state {tmp}: is a directory"),
    ("rollout {relapp} --devices 'gw/*' --state {file}", 2, "not a rollout state file (file is not a"),
    ("rollout {relapp} --devices 'gw/*' --state {otherdb}", 2, "not a rollout state file (it holds other"),
    ("rollout {relapp} --devices 'gw/*' --state {tmp}/missing/s", 2, "directory {tmp}/missing does not"),
    ("rollout {relapp} --devices 'gw/*' --state {tmp}/st --broker {closed}", 3, "cannot connect to MQTT"),
    ("rollout {relapp} --devices 'gw/*' --state {tmp}/st --broker {live}", 2, "no online device matches"),
    ("rollout {relapp} --devices 'gw/*' --state {tmp}/st --broker {live} --key-file {keys}", 2,
     "--key-file must hold one host/... key"),
    ("fetch gw/a", 2, "the following arguments are required: path"),
    ("fetch gw/ app/failed", 2, "argument node: 'gw/' is not a node"),
    ("fetch gw/a ../etc/passwd", 2, "argument path: '../etc/passwd' is not a path under the board's"),
    ("fetch gw/a /etc/passwd", 2, "argument path: '/etc/passwd' is not a path under the board's deploy root"),
    ("fetch gw/a app/failed --out {tmp}", 2, "argument --out: {tmp} is a directory; give the file to write"),
    ("fetch gw/a app/failed --out {tmp}/missing/f", 2, "directory {tmp}/missing does not exist"),
    ("fetch gw/a app/failed --window 0", 2, "argument --window: '0' is not a whole number above 0"),
    ("fetch gw/a app/failed --key-file {keys}", 2, "--key-file must hold two keys"),
    ("fetch gw/a app/failed --broker {closed}", 3, "cannot connect to MQTT broker 127.0.0.1:{closed_port}"),
    ("fetch gw/a app/failed --broker {live} --timeout 0.3", 2, "no reply from gw/a"),
    ("package", 2, "the following arguments are required: --out"),
    ("package --out {file}", 2, "--out {file} is not a directory; give the directory for the index"),
    ("package --out {tmp}/missing/index", 2, "directory {tmp}/missing does not exist; create it (mkdir -p"),
    ("package --out {tmp}/index --mpy-cross {tmp}/missing", 2, "--mpy-cross {tmp}/missing is not an "
     "executable file"),
    ("package --out {tmp}/index --mpy-cross /bin/true", 2, "/bin/true --version did not say which .mpy"),
    ("flash", 2, "the following arguments are required: --board"),
    ("flash --board nosuch", 2, "no board profile 'nosuch'"),
    ("flash --board esp32", 2, "no firmware image given: pass --image"),
    ("flash --board esp32 --image {tmp}/missing", 2, "does not exist"),
    ("flash --board esp32 --image {tmp}", 2, "--image {tmp} is a directory; give the firmware file"),
    ("flash --board esp32 --image {file} --port /dev/null", 2, "not an ESP firmware image"),
    ("flash --board rp2-pico --image {file}", 2, "not a UF2 file"),
    ("spool", 2, "the following arguments are required: VERB"),
    ("spool inspect {tmp}/missing", 2, "no such directory"),
    ("spool inspect {file}", 2, "is not a directory; give a spool directory"),
    ("spool inspect {tmp}", 2, "not a spool"),
    (f"call --broker '' {S}", 2, "argument --broker: broker '' is not HOST:PORT"),
    (f"call --broker 127.0.0.1:0 {S}", 2, "is not HOST:PORT"),
    (f"cast --broker 127.0.0.1:x {S}", 2, "is not HOST:PORT"),
    (f"call --broker {{live}} {S} --version abc", 2, "'abc' is not an API version; give it as major.minor"),
    ("call --broker {live} gw/sensor sensor.", 2, "argument method: 'sensor.' is not a method"),
    ("cast --broker {live} gw/sensor sensor.", 2, "'sensor.' is not a method; give it as service.method"),
    ("call --broker {live} gw/+ s.m", 2, "argument node: 'gw/+' is not a node"),
    ("call --broker {live} gw/ s.m", 2, "'gw/' is not a node; give it as bridge/device"),
    ("cast --broker {live} gw/ s.m", 2, "'gw/' is not a node"),
    ("cast --broker {live} gw/a/b s.m", 2, "'gw/a/b' is not a node"),
    ("call --broker {live} gw s.m", 2, "'gw' is not a node"),
    ("call --broker {live} gw.1/x m.n", 2, "'gw.1/x' is not a node; give it as bridge/device: 'gw.1' is not "
     "a bridge or device name: use 1-64 of A-Z a-z 0-9 - _ ('.' splits topic levels on RabbitMQ"),
    ("cast --broker {live} gw/a~b s.m", 2, "'a~b' is not a bridge or device name: use 1-64 of"),
    ("call --broker {live} 'gw/two words' s.m", 2, "'two words' is not a bridge or device name"),
    (f"call --broker {{live}} {S} nokey", 2, "'nokey' is not key=value"),
    (f"call --broker {{live}} {S} --timeout -1", 2, "argument --timeout: '-1' is not a number of seconds"),
    (f"call --broker {{live}} {S} --timeout 0", 2, "is not a number of seconds above 0"),
    (f"call --broker {{live}} {S} --ca {{tmp}}/missing", 2, "argument --ca: {tmp}/missing: no such file"),
    (f"call --broker {{live}} {S} --ca {{file}}", 2, "not a CA certificate"),
    (f"cast --broker {{live}} {S} --ca {{tmp}}", 2, "is a directory; give the CA certificate"),
    (f"call --broker {{live}} {S} --prefix a/b", 2, "prefix 'a/b' must be one MQTT topic level"),
    (f"call --broker {{live}} {S} --prefix '#'", 2, "must be one MQTT topic level"),
    (f"cast --broker {{live}} {S} --prefix +", 2, "must be one MQTT topic level"),
    (f"call --broker {{live}} {S} --prefix ''", 2, "must be one MQTT topic level"),
    (f"call --broker {{closed}} {S}", 3, "refused; check that the broker runs and that --broker names it"),
    (f"cast --broker {{closed}} {S}", 3, "cannot connect to MQTT broker"),
    (f"call --broker {{silent}} {S}", 3, "MQTT broker 127.0.0.1:{silent_port}"),
    (f"call --broker {{auth}} {S}", 3, "refused"),
    (f"call --broker {{live}} {S} --ca {{ca}}", 3, "MQTT broker 127.0.0.1:{live_port}"),
    (f"call --broker {{live}} {S} --timeout 0.3", 4, "no reply from gw/sensor in 0.3 s"),
    (f"call --broker {{live}} --broker 127.0.0.1:x {S}", 2, "argument --broker: broker '127.0.0.1:x' is not"),
    (f"cast --broker {{live}},'' {S}", 2, "argument --broker: broker '' is not HOST:PORT"),
    (f"call --broker {{closed}} --broker {{silent}} {S}", 3, "no MQTT broker accepted the connection: cannot "
     "connect to MQTT broker 127.0.0.1:{closed_port}: [Errno 111] Connection refused; MQTT broker "
     "127.0.0.1:{silent_port}: no CONNACK in 5.0 s"),
    (f"call --broker {{closed}} --broker {{live}} {S} --timeout 0.3", 4, "no reply from gw/sensor in 0.3 s"),
    ("monitor --broker ''", 2, "argument --broker: broker '' is not HOST:PORT"),
    ("monitor --broker {live} --count -1", 2, "argument --count: '-1' is not a whole number above 0"),
    ("monitor --broker {live} --count 0", 2, "is not a whole number above 0"),
    ("monitor --broker {live} --seconds -1", 2, "argument --seconds: '-1' is not a number of seconds"),
    ("monitor --broker {live} gw/#", 2, "'gw/#' is not a node filter"),
    ("monitor --broker {live} gw", 2, "'gw' is not a node filter"),
    ("monitor --broker {live} gw/+/x", 2, "is not a node filter"),
    ("monitor --broker {live} gw.1/+", 2, "'gw.1/+' is not a node filter"),
    ("monitor --broker {live} --ca {tmp}/missing", 2, "no such file; give the CA certificate"),
    ("monitor --broker {live} --ca {file}", 2, "not a CA certificate"),
    ("monitor --broker {live} --prefix a/b", 2, "must be one MQTT topic level"),
    ("monitor --broker {closed}", 3, "cannot connect to MQTT broker 127.0.0.1:{closed_port}"),
    ("monitor --broker {silent}", 3, "MQTT broker 127.0.0.1:{silent_port}: no CONNACK in 5.0 s"),
    ("monitor --broker {auth}", 3, "refused the connection"),
    ("monitor --broker {live} --ca {ca}", 3, "cannot connect to MQTT broker 127.0.0.1:{live_port}"),
    ("monitor --broker {live} --broker ''", 2, "argument --broker: broker '' is not HOST:PORT"),
    ("monitor --broker {closed} --broker {auth}", 3, "cannot connect to MQTT broker 127.0.0.1:{closed_port}: "
     "[Errno 111] Connection refused; MQTT broker 127.0.0.1:{auth_port} refused the connection"),
    ("bridge", 2, "no bridge name: give NAME"),
    ("bridge gw --spool {spool}", 2, "no outbox: give --outbox DIR"),
    ("bridge gw --outbox {outbox}", 2, "no devices: expected --serial DEVICE=PORT or --spool DIR"),
    ("bridge g/w --outbox {outbox} --spool {spool}", 2, "bridge name (NAME or name in the --config file): "
     "'g/w' is not a bridge or device name: use 1-64 of A-Z a-z 0-9 - _"),
    ("bridge gw.1 --outbox {outbox} --spool {spool}", 2, "'gw.1' is not a bridge or device name: use 1-64"),
    ("bridge _gw --outbox {outbox} --spool {spool}", 2, "'_gw' is reserved: a leading '_' marks spoolbus's"),
    ("bridge gw --outbox {spool} --spool {spool}", 2, "overlap; give each its own directory"),
    ("bridge gw --outbox {spool}/out --spool {spool}", 2, "overlap"),
    ("bridge gw --outbox {outbox} --spool {outbox}/in", 2, "overlap"),
    ("bridge gw --outbox {outbox} --spool {spool} --spool {spool}", 2, "overlap"),
    ("bridge gw --outbox {file} --spool {spool}", 2, "--outbox {file} is not a directory"),
    ("bridge gw --outbox {tmp}/missing/out --spool {spool}", 2, "does not exist; create it (mkdir -p"),
    ("bridge gw --outbox {outbox} --serial _bridge=/dev/null", 2, "device name (in --serial, [serial] or "
     "[keys]): '_bridge' is reserved: a leading '_' marks spoolbus's own nodes (_bridge is the bridge's)"),
    ("bridge gw --outbox {outbox} --serial a/b=/dev/null", 2, "'a/b' is not a bridge or device name"),
    ("bridge gw --outbox {outbox} --serial s.1=/dev/null", 2, "'s.1' is not a bridge or device name"),
    ("bridge gw --outbox {outbox} --serial sensor", 2, "expected DEVICE=PORT"),
    ("bridge gw --outbox {outbox} --spool {spool} --device-quota 0", 2, "argument --device-quota: '0'"),
    ("bridge gw --outbox {outbox} --spool {spool} --baudrate 0", 2, "argument --baudrate: '0' is not"),
    ("bridge gw --outbox {outbox} --spool {spool} --baudrate -1", 2, "is not a whole number above 0"),
    ("bridge gw --outbox {outbox} --spool {spool} --prefix a/b", 2, "must be one MQTT topic level"),
    ("bridge gw --outbox {outbox} --spool {spool} --prefix '#'", 2, "must be one MQTT topic level"),
    ("bridge gw --outbox {outbox} --spool {spool} --prefix +", 2, "must be one MQTT topic level"),
    ("bridge gw --outbox {outbox} --spool {spool} --prefix ''", 2, "must be one MQTT topic level"),
    ("bridge gw --outbox {outbox} --spool {spool} --broker ''", 2, "is not HOST:PORT"),
    ("bridge gw --outbox {outbox} --spool {spool} --broker {live} --broker x:0", 2,
     "argument --broker: broker 'x:0' is not HOST:PORT"),
    ("bridge gw --outbox {outbox} --spool {tmp}/missing/spool", 2,
     "--spool {tmp}/missing/spool: directory {tmp}/missing does not exist; create it"),
    ("bridge gw --outbox {outbox} --spool {spool} --registry {tmp}/missing/devices.db", 2,
     "directory {tmp}/missing does not exist; create it"),
    ("bridge gw --outbox {outbox} --spool {spool} --registry {file}", 2,
     "not a device registry (file is not a database)"),
    ("bridge gw --outbox {outbox} --spool {spool} --registry {otherdb}", 2, "no devices table"),
    ("bridge gw --outbox {outbox} --spool {spool} --registry {tmp}", 2, "is a directory; give the registry"),
    ("bridge gw --outbox {outbox} --spool {spool} --ca {tmp}/missing", 2, "no such file"),
    ("bridge gw --outbox {outbox} --spool {spool} --ca {file}", 2, "not a CA certificate"),
    ("bridge gw --outbox {outbox} --spool {spool} --tls-cert {ca}", 2, "needs both --tls-cert and --tls-key"),
    ("bridge gw --outbox {outbox} --spool {spool} --tls-cert {file} --tls-key {file}", 2,
     "not a certificate and its key"),
    ("bridge gw --outbox {outbox} --serial s={tmp}/missing --broker {live}", 2, "cannot open serial port"),
    ("bridge --config {tmp}/missing.toml", 2, "cannot read the bridge configuration"),
    ("bridge --config {tmp}", 2, "cannot read the bridge configuration: Is a directory"),
    ("bridge --config {binary}", 2, "not a text file"),
    ("bridge --config {example}", 2, "/var/lib/spoolbus does not exist; create it"),
    ("bridge --config {zeroquota}", 2, "device_quota = 0 is not valid; write device_quota = 1000"),
    ("bridge --config {bothbrokers}", 2, "both broker and brokers are set; keep one: broker = "),
    ("bridge --config {badbrokers}", 2, "brokers[1] = 'b:x' is not valid; write brokers = ["),
    ("bridge --config {dotdevice}", 2, "{dotdevice}: serial: 'sensor.1' is not a bridge or device name: "
     "use 1-64 of A-Z a-z 0-9 - _ ('.' splits topic levels on RabbitMQ"),
    ("bridge --config {dotname}", 2, "{dotname}: name: 'gw.1' is not a bridge or device name"),
    ("bridge --config {underkey}", 2, "{underkey}: keys: '_x' is reserved"),
    ("devices --broker {closed}", 3, "refused; check that the broker runs and that --broker names it"),
    ("devices --broker nohost:x", 2, "is not HOST:PORT"),
    ("devices --db {tmp}/missing.db", 2, "no such file"),
    ("devices --db {tmp}", 2, "is a directory"),
    ("devices --db {file}", 2, "not a device registry (file is not a database)"),
    ("devices --db /dev/null", 2, "no devices table"),
    ("devices --db {otherdb}", 2, "no devices table"),
    ("boards nosuch", 2, "no board profile 'nosuch': known boards are"),
    ("boards ''", 2, "no board profile ''"),
    ("no-such-command", 2, "invalid choice: 'no-such-command'"),
]
ENV_CASES = [  # (environment, argv, status, words)
    ({"SPOOLBUS_BROKER": "nonsense:x"}, f"call {S}", 2, "$SPOOLBUS_BROKER"),
    ({"SPOOLBUS_BROKER": ""}, "monitor", 2, "broker '' is not HOST:PORT"),
    ({"SPOOLBUS_BROKER": "127.0.0.1:1883,nonsense:x"}, f"call {S}", 2, "broker 'nonsense:x' is not HOST:PORT "
     "(from --broker, $SPOOLBUS_BROKER"),
]
ALL = [({}, *case) for case in CASES] + ENV_CASES


def _silent_listener() -> socket.socket:
    """Accepts TCP connections and never answers: a broker that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return sock


def _spoolbus(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", *argv], capture_output=True,
                          text=True, timeout=20, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files, brokers and ports the cases point at; runs every case once, in parallel."""
    tmp = tmp_path_factory.mktemp("cli")
    live = Broker(tmp / "live").start()
    auth = Broker(tmp / "auth", users={"gw": "secret"}).start()
    silent = _silent_listener()
    master, slave = pty.openpty()  # a serial port nobody answers on
    ca, _, _ = make_certs(tmp / "tls")
    (tmp / "app").mkdir()
    (tmp / "app" / "main.py").write_text("print('app')\n")
    for name, version in (("relapp", '"1.0"'), ("badrel", '"1"')):
        (tmp / name).mkdir()
        (tmp / name / "main.py").write_text("print('app')\n")
        (tmp / name / "release.toml").write_text(f"[services]\napp = {version}\n")
    (tmp / "spool").mkdir()
    (tmp / "outbox").mkdir()
    (tmp / "file").write_text("not a certificate, a database or a firmware image\n")
    (tmp / "binary").write_bytes(b"\xff\xfe\x00TOML?")
    (tmp / "bad.toml").write_text("name = \n")
    (tmp / "keys.json").write_text('{"gw/b": "00ff"}')
    (tmp / "badkeys.toml").write_text('"gw/a" = "00ff"\n"gw/b" = "xyz"\n')
    (tmp / "zeroquota.toml").write_text("device_quota = 0\n")
    (tmp / "bothbrokers.toml").write_text('name = "gw"\nbroker = "a:1883"\nbrokers = ["b:1883"]\n')
    (tmp / "badbrokers.toml").write_text('name = "gw"\nbrokers = ["a:1883", "b:x"]\n')
    (tmp / "dotkeys.json").write_text('{"gw/a": "00ff", "gw.1/a": "00ff"}')
    (tmp / "dotdevice.toml").write_text('name = "gw1"\n[serial]\n"sensor.1" = "/dev/null"\n')
    (tmp / "dotname.toml").write_text('name = "gw.1"\n')
    (tmp / "underkey.toml").write_text('[keys]\n_x = "00ff"\n')
    (tmp / "example.toml").write_text(  # the example as a fresh host without /var/lib/spoolbus has it
        (ROOT / "examples" / "bridge.toml").read_text().replace("/var/lib/", f"{tmp}/var/lib/"))
    other = tmp / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("create table notes (text)")
    db.close()
    closed = free_port()
    names = {"tmp": str(tmp), "app": str(tmp / "app"), "relapp": str(tmp / "relapp"),
             "badrel": str(tmp / "badrel"), "spool": str(tmp / "spool"),
             "outbox": str(tmp / "outbox"), "file": str(tmp / "file"), "binary": str(tmp / "binary"),
             "badtoml": str(tmp / "bad.toml"), "keys": str(tmp / "keys.json"),
             "badkeys": str(tmp / "badkeys.toml"), "zeroquota": str(tmp / "zeroquota.toml"),
             "bothbrokers": str(tmp / "bothbrokers.toml"), "badbrokers": str(tmp / "badbrokers.toml"),
             "dotkeys": str(tmp / "dotkeys.json"), "dotdevice": str(tmp / "dotdevice.toml"),
             "dotname": str(tmp / "dotname.toml"), "underkey": str(tmp / "underkey.toml"),
             "example": str(tmp / "example.toml"), "otherdb": str(other), "ca": str(ca),
             "pty": os.ttyname(slave), "live": f"127.0.0.1:{live.port}", "live_port": str(live.port),
             "auth": f"127.0.0.1:{auth.port}", "auth_port": str(auth.port),
             "closed": f"127.0.0.1:{closed}", "closed_port": str(closed),
             "silent": f"127.0.0.1:{silent.getsockname()[1]}", "silent_port": str(silent.getsockname()[1])}
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPOOLBUS_BROKER", "SPOOLBUS_DEBUG"))}
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda case: _spoolbus(shlex.split(case[1].format(**names)),
                                                           {**base, **case[0]}), ALL))
    finally:
        live.stop()
        auth.stop()
        silent.close()
        os.close(master)
        os.close(slave)
    yield names, results, (other, before)


def _the_line(stderr: str) -> str:
    """The one line a refusal prints; argparse's usage (possibly wrapped) before it is allowed."""
    lines = stderr.splitlines()
    if lines and lines[0].startswith("usage: "):
        rest = lines[1:]
        while rest and rest[0].startswith(" "):  # the usage wrapped onto more lines
            rest = rest[1:]
        assert len(rest) == 1 and ": error: " in rest[0], stderr
        return rest[0]
    assert len(lines) == 1 and lines[0].startswith("spoolbus ") and lines[0].strip(), stderr
    return lines[0]


@pytest.mark.parametrize("index", [pytest.param(i, id=" ".join(f"{k}={v}" for k, v in env.items()) + argv)
                                   for i, (env, argv, _, _) in enumerate(ALL)])
def test_a_bad_argument_gets_one_line_naming_the_fix(world, index):
    names, results, _ = world
    _, _, status, words = ALL[index]
    out = results[index]
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == status, out.stderr
    assert out.stdout == ""
    line = _the_line(out.stderr)
    assert words.format(**names) in line


def test_a_refused_registry_is_left_unchanged(world):
    _, _, (other, before) = world
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
