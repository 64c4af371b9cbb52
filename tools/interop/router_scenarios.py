#!/usr/bin/env python3
"""Interop scenarios for oscgate's tcposcrouter front door (`oscgate run`, `[router]`).

Runs `oscgate run` with only a loopback `[router]` section (a length-prefix port and a SLIP
port, both picked at run time) and drives it with tcposcrouter clients nobody here wrote:
python-osc `SimpleTCPClient` in mode "1.0" (length prefix) and "1.1" (SLIP), liblo's `oscsend`
and `oscsendfile`, npm `osc` (osc.js) `TCPSocketPort` in router_client.js, and SuperCollider's
`sclang` running router_client.scd the way HyperDisCo's OSCRouterClient joins. Every scenario
runs once per driver (`--driver mio`, then `--driver uring`; uring is skipped with the reason
when the kernel cannot run it) and asserts exactly what each side received, types included:
register replies, user lists, group traffic (bytes untouched, never back to the sender),
private messages, pings swallowed. Prints one PASS/FAIL/SKIP line per scenario and driver and
a last line `N passed, M failed`; exits non-zero on any failure (a SKIP counts as a failure
when OSCGATE_REQUIRE_ROOT_TESTS=1).

It does not build oscgate, install anything (see setup.sh), or send anything outside
127.0.0.0/8. Process management and ports come from cli_scenarios.py.

Run with the venv from setup.sh: `.venv/bin/python router_scenarios.py --oscgate PATH`.
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cli_scenarios as cli  # noqa: E402  (helpers shared with the CLI scenarios)
from cli_scenarios import LOOPBACK, Fail, Skip, msg  # noqa: E402
from pythonosc.osc_bundle import OscBundle  # noqa: E402
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder  # noqa: E402
from pythonosc.osc_message import OscMessage  # noqa: E402
from pythonosc.tcp_client import SimpleTCPClient  # noqa: E402

BUDGET_S = 120.0  # whole run
HARD_STOP_S = 150  # SIGALRM if something still hangs
STARTUP_S = 5.0  # time for oscgate to print `oscgate: running`
WAIT_S = 3.0  # time for an expected packet to arrive
QUIET_S = 0.3  # how long "nothing else arrives" is watched
NODE_S = 10.0  # router_client.js: start, exchange, exit (it gives up itself after 10 s)
SCLANG_S = 25.0  # router_client.scd: start-up (a few s), exchange, exit (it gives up after 20 s)
DRIVERS = ("mio", "uring")

URING_UNUSABLE = "io_uring is not usable here"
PING = "/oscrouter/ping"
PRIVATE = "/oscrouter/private"
REGISTER = "/oscrouter/register"
USERLIST = "/oscrouter/userlist"
ERROR = "/oscrouter/error"
# The reasons oscgate gives in /oscrouter/error (src/proto/router.rs, Refusal::as_str).
NOT_REGISTER = "first message must be /oscrouter/register"
WRONG_PASSWORD = "wrong password"
WRONG_GROUP_PASSWORD = "wrong group password"

OSCGATE = "oscgate"
TMP = None  # a TemporaryDirectory for configs, files and sclang's HOME
CLEANUP = []  # callables closing python-side clients of the running scenario
URING_SKIP = None  # the reason, once oscgate said uring cannot run here


def cleanup():
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except Exception:  # closing something already broken is not a finding
            pass
    cli.kill_all()


# --------------------------------------------------------------------------------------
# the router
# --------------------------------------------------------------------------------------


class Router:
    """`oscgate run --driver DRIVER` with only `[router]`, on two kernel-picked loopback ports."""

    _n = 0

    def __init__(self, driver):
        global URING_SKIP
        if driver == "uring" and URING_SKIP:
            raise Skip(URING_SKIP)
        self.driver = driver
        self.len32 = (LOOPBACK, cli.tcp_port())
        self.slip = (LOOPBACK, cli.tcp_port())
        while self.slip == self.len32:
            self.slip = (LOOPBACK, cli.tcp_port())
        Router._n += 1
        path = os.path.join(TMP, f"router-{Router._n}.toml")
        with open(path, "w") as f:
            f.write(
                "[messenger]\nenabled = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n"
                "[router]\n"
                f'listen = "{LOOPBACK}:{self.len32[1]}"\n'
                f'listen_slip = "{LOOPBACK}:{self.slip[1]}"\n'
            )
        self.proc = cli.Proc(
            [OSCGATE, "run", "--config", path, "--driver", driver], f"oscgate run --driver {driver}"
        )
        if not self.proc.wait_for("out", lambda line: line == "oscgate: running", timeout=STARTUP_S):
            self.proc.wait_exit(1.0)
            unusable = [line for line in self.proc.err if URING_UNUSABLE in line]
            if driver == "uring" and unusable:
                URING_SKIP = unusable[0].strip()
                raise Skip(URING_SKIP)
            raise Fail(f"oscgate never printed 'oscgate: running'\n{self.proc.describe()}")
        want = (
            f"oscgate: router on {LOOPBACK}:{self.len32[1]} (len32) and "
            f"{LOOPBACK}:{self.slip[1]} (slip), driver {driver}"
        )
        if want not in self.proc.out:
            raise Fail(f"oscgate did not print {want!r}\n{self.proc.describe()}")

    def url(self):
        return f"osc.tcp://{LOOPBACK}:{self.len32[1]}"


# --------------------------------------------------------------------------------------
# what was received, decoded with types
# --------------------------------------------------------------------------------------


def typed(values):
    """Values paired with their Python type names (so True never equals 1, nor 2 equal 2.0)."""
    return [(type(v).__name__, v) for v in values]


def m(address, *values):
    """An expected message: address and typed values."""
    return (address, typed(values))


def b(*contents):
    """An expected bundle (its time tag is not compared): its elements in order."""
    return ("#bundle", list(contents))


def decode(frame):
    """A received packet as python-osc decodes it, in the form m() and b() build."""
    try:
        if OscBundle.dgram_is_bundle(frame):
            return ("#bundle", [decode(c.dgram) for c in OscBundle(frame)])
        message = OscMessage(frame)
        return (message.address, typed(message.params))
    except Exception as e:  # shown in the comparison, which then fails
        return ("<undecodable>", [("error", repr(e)), ("bytes", frame.hex())])


def register(user, password, group, group_password, ident):
    """`/oscrouter/register ,ssss` plus the id as a (value, type tag) pair, or none."""
    typed_args = [(user, "s"), (password, "s"), (group, "s"), (group_password, "s")]
    if ident is not None:
        typed_args.append(ident)
    return msg(REGISTER, *typed_args)


def private(target, address, *typed_args):
    return msg(PRIVATE, (target, "s"), (address, "s"), *typed_args)


def userlist(*names):
    return m(USERLIST, *names)


def show(items):
    return "".join(f"    {item!r}\n" for item in items)


# --------------------------------------------------------------------------------------
# python-osc clients
# --------------------------------------------------------------------------------------


class Peer:
    """A python-osc SimpleTCPClient (mode "1.0" = length prefix, "1.1" = SLIP) on the router;
    its own receive() reads every frame on a reader thread, kept as it arrived."""

    def __init__(self, name, addr, mode):
        self.name = name
        self.mode = mode
        self.client = SimpleTCPClient(addr[0], addr[1], mode=mode, timeout=2.0)
        self.cond = threading.Condition()
        self.frames = []
        self.eof = False
        self.error = None
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        CLEANUP.append(self.close)

    def _read(self):
        sock = self.client.socket
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.05)
                if not ready:
                    continue
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    with self.cond:
                        self.eof = True
                        self.cond.notify_all()
                    return
                frames = self.client.receive(timeout=1.0)
            except (OSError, ValueError, struct.error) as e:
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
                return
            with self.cond:
                self.frames.extend(f for f in frames if f)
                self.cond.notify_all()

    def send(self, packet):
        self.client.send(packet)

    def close(self):
        self.stop.set()
        self.reader.join(1.0)
        self.client.close()

    def raw(self):
        with self.cond:
            return list(self.frames)

    def received(self):
        return [decode(f) for f in self.raw()]

    def wait(self, pred, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
            return True

    def wait_count(self, n, timeout=WAIT_S):
        return self.wait(lambda: len(self.frames) >= n or self.eof or self.error, timeout)

    def expect(self, expected, timeout=WAIT_S):
        """Everything received so far is exactly `expected` (waits for that many packets)."""
        self.wait_count(len(expected), timeout)
        got = self.received()
        if got != expected:
            raise Fail(
                f"{self.name} received other packets than expected\n  expected:\n{show(expected)}"
                f"  actual:\n{show(got)}{self.describe()}"
            )

    def expect_refused(self, reason):
        """The only packet received is `/oscrouter/error ,s reason`, then the router closed."""
        self.expect([m(ERROR, reason)])
        if not self.wait(lambda: self.eof):
            raise Fail(f"{self.name}: the router did not close the connection\n{self.describe()}")

    def join(self, user, password, group, group_password, ident, reply_id, members):
        """Registers; the reply and the user list (`members`, this user last) must follow."""
        self.send(register(user, password, group, group_password, ident))
        self.expect([m(f"{REGISTER}/{user}/{reply_id}"), userlist(*members)])

    def describe(self):
        return (
            f"  [{self.name}] received: {self.received()!r}\n"
            f"  [{self.name}] eof={self.eof} error={self.error!r}"
        )


def expect_raw(peer, index, packets):
    """Packets `index`.. that `peer` received are byte for byte `packets` (forwarded untouched)."""
    got = peer.raw()[index : index + len(packets)]
    if got != packets:
        raise Fail(
            f"{peer.name}: forwarded bytes differ from what was sent\n"
            f"  sent:     {[p.hex() for p in packets]}\n  received: {[p.hex() for p in got]}"
        )


def expect_quiet(*peers):
    """Nothing more arrives at any of `peers` (each: (peer, packets it has received so far))."""
    time.sleep(QUIET_S)
    for peer, n in peers:
        if len(peer.raw()) != n:
            raise Fail(f"{peer.name}: expected {n} packets, got more\n{peer.describe()}")


def need(tool, hint):
    path = shutil.which(tool)
    if not path:
        raise Fail(f"{tool} not found on PATH: {hint}")
    return path


# --------------------------------------------------------------------------------------
# r1: python-osc 1.0 and 1.1
# --------------------------------------------------------------------------------------


def scenario_python(driver):
    """python-osc 1.0 (len32 port) and 1.1 (SLIP port) in one group, and refused registers."""
    rt = Router(driver)
    group = "r1-group"
    alice = Peer("alice (python-osc 1.0, len32 port)", rt.len32, "1.0")
    alice.join("alice", "alice pw", group, "gpw", (4242, "i"), "4242", ["alice"])
    bob = Peer("bob (python-osc 1.1 SLIP, SLIP port)", rt.slip, "1.1")
    # An id sent as a float (as Pd does) comes back the way Python prints it.
    bob.join("bob", "bob pw", group, "gpw", (99.0, "f"), "99.0", ["alice", "bob"])
    to_alice = [m(f"{REGISTER}/alice/4242"), userlist("alice"), userlist("alice", "bob")]
    alice.expect(to_alice)
    to_bob = [m(f"{REGISTER}/bob/99.0"), userlist("alice", "bob")]

    # alice -> bob: every python-osc type, an immediate bundle with a nested one, a bundle
    # timed an hour ahead (forwarded at once, untouched), a ping (swallowed), a private.
    a_msg = msg(
        "/r1/alice", (42, "i"), (2.5, "f"), ("text", "s"), (b"\x00\xc0\xdb\xff", "b"),
        (-5000000000, "h"), (0.1, "d"), (True, "T"), (False, "F"), (None, "N"),
    )
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(msg("/r1/alice/nested", ("deep", "s")))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(msg("/r1/alice/bundled", (1, "i"), (-0.5, "f")))
    outer.add_content(inner.build())
    a_bundle = outer.build()
    later = OscBundleBuilder(time.time() + 3600)
    later.add_content(msg("/r1/alice/later", (3, "i")))
    a_later = later.build()
    for packet in (a_msg, a_bundle, msg(PING, ("alice", "s")), a_later):
        alice.send(packet)
    alice.send(private("bob", "/r1/private", (7, "i"), ("to bob", "s"), (0.25, "f")))
    to_bob += [
        m("/r1/alice", 42, 2.5, "text", b"\x00\xc0\xdb\xff", -5000000000, 0.1, True, False, None),
        b(m("/r1/alice/bundled", 1, -0.5), b(m("/r1/alice/nested", "deep"))),
        b(m("/r1/alice/later", 3)),
        m(PRIVATE, "alice", "/r1/private", 7, "to bob", 0.25),
    ]
    bob.expect(to_bob)
    expect_raw(bob, 2, [a_msg.dgram, a_bundle.dgram, a_later.dgram])

    # bob -> alice, the other framing: SLIP's END and ESC bytes inside, a bundle, a private.
    b_msg = msg(
        "/r1/bob", (b"\xc0\xdb\xdc\xdd", "b"), ("c0 db", "s"), (-1, "i"), (1e300, "d"),
        (2**40, "h"), (True, "T"), (None, "N"),
    )
    bb = OscBundleBuilder(IMMEDIATELY)
    bb.add_content(msg("/r1/bob/bundled", ("x", "s")))
    bb.add_content(msg("/r1/bob/bundled", (b"\xc0", "b")))
    b_bundle = bb.build()
    bob.send(msg(PING, ("bob", "s")))
    bob.send(b_msg)
    bob.send(b_bundle)
    bob.send(private("alice", "/r1/private", (b"\xc0", "b"), (False, "F")))
    to_alice += [
        m("/r1/bob", b"\xc0\xdb\xdc\xdd", "c0 db", -1, 1e300, 2**40, True, None),
        b(m("/r1/bob/bundled", "x"), m("/r1/bob/bundled", b"\xc0")),
        m(PRIVATE, "bob", "/r1/private", b"\xc0", False),
    ]
    alice.expect(to_alice)
    expect_raw(alice, 3, [b_msg.dgram, b_bundle.dgram])

    # Refused: a wrong group password, a taken name with the wrong password, a first message
    # that is not a register. Each gets /oscrouter/error and is closed; nobody else hears of it.
    carol = Peer("carol (wrong group password)", rt.len32, "1.0")
    carol.send(register("carol", "pw", group, "not gpw", (1, "i")))
    carol.expect_refused(WRONG_GROUP_PASSWORD)
    mallory = Peer("mallory as bob (wrong password)", rt.slip, "1.1")
    mallory.send(register("bob", "not bob pw", group, "gpw", (2, "i")))
    mallory.expect_refused(WRONG_PASSWORD)
    early = Peer("unregistered sender", rt.len32, "1.0")
    early.send(msg("/r1/early", (1, "i")))
    early.expect_refused(NOT_REGISTER)
    expect_quiet((alice, len(to_alice)), (bob, len(to_bob)))

    # bob leaves: alice gets the new list; nothing else arrives anywhere.
    bob.close()
    to_alice.append(userlist("alice"))
    alice.expect(to_alice)
    expect_quiet((alice, len(to_alice)))


# --------------------------------------------------------------------------------------
# r2: liblo oscsend and oscsendfile
# --------------------------------------------------------------------------------------


def scenario_oscsend(driver):
    """liblo oscsend (one connection per message): its register is accepted, as the group's
    user lists show; a first message that is not a register reaches nobody."""
    need("oscsend", "run tools/interop/setup.sh (Debian package liblo-tools)")
    rt = Router(driver)
    group = "r2"
    py = Peer("py (python-osc 1.1, SLIP port)", rt.slip, "1.1")
    py.join("py", "pw", group, "gpw", (1, "i"), "1", ["py"])
    expected = [m(f"{REGISTER}/py/1"), userlist("py")]

    def liblo_register():
        cli.run_ok(["oscsend", rt.url(), REGISTER, "ssssi", "liblo", "lpw", group, "gpw", "7"])
        # It joins, then leaves when oscsend closes its connection.
        expected.extend([userlist("py", "liblo"), userlist("py")])
        py.expect(expected)

    liblo_register()
    cli.run_ok(["oscsend", rt.url(), "/r2/unregistered", "ifs", "1", "2.5", "not registered"])
    # Register again: had the unregistered message been forwarded, it would be in the list.
    liblo_register()
    expect_quiet((py, len(expected)))


def scenario_oscsendfile(driver):
    """liblo oscsendfile: several messages on one connection, register first, received by a
    python-osc client with their types. oscsendfile sends every line inside a bundle (lines
    with the same time tag share one); each line here has its own time tag, so the first
    packet is a bundle holding only the register, as it is from any liblo program that sends
    bundles. tcposcrouter 0.2.0 takes it (python-osc's dispatcher unwraps bundles); oscgate
    acts on the register and forwards the rest of each bundle as a bundle."""
    need("oscsendfile", "run tools/interop/setup.sh (Debian package liblo-tools)")
    rt = Router(driver)
    group = "r2f"
    py = Peer("py (python-osc 1.0, len32 port)", rt.len32, "1.0")
    py.join("py", "pw", group, "gpw", (1, "i"), "1", ["py"])
    # `[timetag] path types args...`: time tags as hex seconds.fraction, relative to the
    # first line; 0x01000000 / 2**32 s is about 4 ms. Strings cannot hold spaces.
    # oscsendfile sends each line at its time and closes the connection right after the last
    # one without reading the router's replies, so its kernel resets the connection, and a
    # reset makes the receiving kernel discard what it had not yet handed to the router. The
    # last line is therefore a ping half a second later: the lines that matter are read long
    # before the reset, and losing the ping to it changes nothing.
    lines = [
        f"00000000.00000000 {REGISTER} ssssi lofile lpw {group} gpw 8",
        "00000000.01000000 /r2/file ifsd 1 2.5 text 0.25",
        "00000000.02000000 /r2/file hmTFN -5000000000 903c7f00",
        "00000000.80000000 /oscrouter/ping s lofile",
    ]
    path = os.path.join(TMP, f"oscsendfile-{driver}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    cp = cli.run(["oscsendfile", rt.url(), path], timeout=10)
    outcome = f"  oscsendfile exited {cp.returncode}, stderr {cp.stderr.strip()!r}\n"
    try:
        py.expect(
            [
                m(f"{REGISTER}/py/1"),
                userlist("py"),
                userlist("py", "lofile"),
                b(m("/r2/file", 1, 2.5, "text", 0.25)),
                b(m("/r2/file", -5000000000, (0x90, 0x3C, 0x7F, 0x00), True, False, None)),
                userlist("py"),
            ]
        )
    except Fail as e:
        hint = ""
        if len(py.raw()) == 2:
            hint = (
                "  (the group never saw user lofile: a first packet that is a bundle holding"
                " /oscrouter/register was refused)\n"
            )
        raise Fail(f"{e}\n{outcome}{hint}")
    if cp.returncode != 0 or cp.stderr.strip():
        raise Fail(f"oscsendfile failed although its messages arrived\n{outcome}")
    expect_quiet((py, 6))


# --------------------------------------------------------------------------------------
# r3: npm osc (osc.js) TCPSocketPort
# --------------------------------------------------------------------------------------


def plain_json(line, prefix):
    try:
        return json.loads(line[len(prefix) :])
    except ValueError:
        raise Fail(f"not JSON after {prefix!r}: {line!r}")


def js(address, *args):
    """A message as router_client.js prints it: osc.js's metadata form."""
    return {"address": address, "args": [{"type": t, "value": v} for t, v in args]}


def scenario_node(driver):
    """osc.js TCPSocketPort (SLIP) registers with a string id and exchanges typed messages,
    bundles and private messages with a python-osc client on the length-prefix port."""
    need("node", "run tools/interop/setup.sh (Debian packages nodejs, npm)")
    script = os.path.join(HERE, "router_client.js")
    if not os.path.isfile(os.path.join(HERE, "node_modules", "osc", "package.json")):
        raise Fail(f"npm osc is not installed in {HERE}/node_modules: run tools/interop/setup.sh")
    rt = Router(driver)
    group = "r3"
    py = Peer("py (python-osc 1.0, len32 port)", rt.len32, "1.0")
    py.join("py", "pw", group, "gpw", (1, "i"), "1", ["py"])
    to_py = [m(f"{REGISTER}/py/1"), userlist("py")]
    node = cli.Proc(
        ["node", script, LOOPBACK, rt.slip[1], "node", "npw", group, "gpw", "node-7", "py"],
        "node router_client.js",
    )
    to_py += [userlist("py", "node"), m("/node/ready")]
    py.expect(to_py, timeout=NODE_S)

    py_msg = msg(
        "/py/data", (1, "i"), (2.5, "f"), ("s s", "s"), (b"\x01\xc0", "b"), (-5000000000, "h"),
        (0.1, "d"), (True, "T"), (False, "F"), (None, "N"),
    )
    bb = OscBundleBuilder(IMMEDIATELY)
    bb.add_content(msg("/py/inbundle", (1, "i")))
    bb.add_content(msg("/py/inbundle", ("x", "s")))
    ping = msg(PING, ("py", "s"))
    for packet in (py_msg, bb.build(), ping, private("node", "/py/private", (3, "i")), msg("/py/done")):
        py.send(packet)
    to_py += [
        m("/node/data", 42, 2.5, "from osc.js", b"\xc0\xdb\x00\xff", -5000000000, 0.1, True, False,
          None),
        b(m("/node/inbundle", 1), m("/node/inbundle", "two")),
        m(PRIVATE, "node", "/node/private", 7),
        m("/node/done"),
    ]
    py.expect(to_py, timeout=NODE_S)
    py.send(msg("/py/bye"))
    rc = node.wait_exit(NODE_S)
    if rc != 0:
        raise Fail(f"router_client.js exited {rc}, expected 0\n{node.describe()}\n{py.describe()}")
    to_py.append(userlist("py"))
    py.expect(to_py)

    recv = [plain_json(line, "RECV ") for line in node.out if line.startswith("RECV ")]
    for packet in recv:
        if "timeTag" in packet:
            packet["timeTag"].pop("native", None)  # milliseconds since 1970; depends on now
    want = [
        js(f"{REGISTER}/node/node-7"),
        js(USERLIST, ("s", "py"), ("s", "node")),
        js(
            "/py/data", ("i", 1), ("f", 2.5), ("s", "s s"), ("b", {"blob": "01c0"}),
            ("h", {"long": "-5000000000"}), ("d", 0.1), ("T", True), ("F", False), ("N", None),
        ),
        {
            "timeTag": {"raw": [0, 1]},
            "packets": [js("/py/inbundle", ("i", 1)), js("/py/inbundle", ("s", "x"))],
        },
        js(PRIVATE, ("s", "py"), ("s", "/py/private"), ("i", 3)),
        js("/py/done"),
        js("/py/bye"),
    ]
    if recv != want:
        raise Fail(
            f"osc.js received other packets than expected\n  expected:\n{show(want)}"
            f"  actual:\n{show(recv)}{node.describe()}"
        )
    # What osc.js wrote: register, ready, ping, data, bundle, private, done. The router
    # forwards ready, the data and the bundle byte for byte.
    sent = [bytes.fromhex(line[5:]) for line in node.out if line.startswith("SENT ")]
    if len(sent) != 7:
        raise Fail(f"router_client.js should have sent 7 packets\n{node.describe()}")
    expect_raw(py, 3, [sent[1]])
    expect_raw(py, 4, sent[3:5])
    expect_quiet((py, len(to_py)))


# --------------------------------------------------------------------------------------
# r4: SuperCollider sclang
# --------------------------------------------------------------------------------------


def scenario_sclang(driver):
    """sclang joins like HyperDisCo's OSCRouterClient (NetAddr, tryConnectTCP, register with
    an Integer id, ping) and exchanges typed messages, bundles and private messages with a
    python-osc client on the SLIP port."""
    need("sclang", "run tools/interop/setup.sh (Debian package supercollider-language)")
    rt = Router(driver)
    group = "r4"
    py = Peer("py (python-osc 1.1, SLIP port)", rt.slip, "1.1")
    py.join("py", "pw", group, "gpw", (1, "i"), "1", ["py"])
    to_py = [m(f"{REGISTER}/py/1"), userlist("py")]
    home = tempfile.mkdtemp(prefix=f"sclang-{driver}-", dir=TMP)
    # Headless as root: no display, no sandbox for the Qt web engine it loads; its own UDP port
    # instead of 57120; a private HOME for the files it writes.
    env_args = [
        "env", "QT_QPA_PLATFORM=offscreen", "QTWEBENGINE_DISABLE_SANDBOX=1",
        "QTWEBENGINE_CHROMIUM_FLAGS=--no-sandbox", f"HOME={home}",
    ]
    sc = cli.Proc(
        [*env_args, "sclang", "-u", cli.udp_port(), os.path.join(HERE, "router_client.scd"),
         LOOPBACK, rt.len32[1], "sc", "scpw", group, "gpw", "4242", "py"],
        "sclang router_client.scd",
    )
    to_py += [userlist("py", "sc"), m("/sc/ready")]
    py.expect(to_py, timeout=SCLANG_S)

    # sclang 3.13 cannot read 'h' (it takes the tag for a Char and misreads what follows), so
    # the types sent to it are the ones it decodes: i f s b d T F N.
    py_msg = msg(
        "/py/data", (1, "i"), (2.5, "f"), ("s s", "s"), (b"\x01\xff", "b"), (0.1, "d"),
        (True, "T"), (False, "F"), (None, "N"),
    )
    bb = OscBundleBuilder(IMMEDIATELY)
    bb.add_content(msg("/py/inbundle", (1, "i")))
    bb.add_content(msg("/py/inbundle", ("x", "s")))
    ping = msg(PING, ("py", "s"))
    for packet in (py_msg, bb.build(), ping, private("sc", "/py/private", (3, "i")), msg("/py/done")):
        py.send(packet)
    to_py += [
        m("/sc/data", 42, -7, 2.5, "a symbol", "a string", b"\x01\x02\xff"),
        b(m("/sc/inbundle", 1), m("/sc/inbundle", "two")),
        m(PRIVATE, "sc", "/sc/private", 7, "secret"),
        m("/sc/done"),
    ]
    py.expect(to_py, timeout=SCLANG_S)
    py.send(msg("/py/bye"))
    rc = sc.wait_exit(SCLANG_S)
    if rc != 0:
        raise Fail(f"sclang exited {rc}, expected 0\n{sc.describe()}\n{py.describe()}")
    to_py.append(userlist("py"))
    py.expect(to_py)

    recv = [line for line in sc.out if line.startswith("RECV ")]
    want = [
        "RECV Symbol:'/oscrouter/register/sc/4242'",
        "RECV Symbol:'/oscrouter/userlist' Symbol:'py' Symbol:'sc'",
        "RECV Symbol:'/py/data' Integer:1 Float:2.5 Symbol:'s s' Int8Array:Int8Array[ 1, -1 ]"
        " Float:0.1 True:true False:false Nil:nil",
        "RECV Symbol:'/py/inbundle' Integer:1",
        "RECV Symbol:'/py/inbundle' Symbol:'x'",
        "RECV Symbol:'/oscrouter/private' Symbol:'py' Symbol:'/py/private' Integer:3",
        "RECV Symbol:'/py/done'",
        "RECV Symbol:'/py/bye'",
    ]
    if recv != want:
        raise Fail(
            f"sclang received other messages than expected\n  expected:\n{show(want)}"
            f"  actual:\n{show(recv)}{sc.describe()}"
        )
    for marker in ("REGISTERED", "SENT", "BYE"):
        if marker not in sc.out:
            raise Fail(f"sclang did not print {marker}\n{sc.describe()}")
    expect_quiet((py, len(to_py)))


SCENARIOS = [
    ("r1", "python-osc 1.0 + 1.1 (SLIP): replies, user lists, types, bundles, private, ping, refusals",
     scenario_python),
    ("r2", "liblo oscsend: register accepted, unregistered message dropped", scenario_oscsend),
    ("r2-file", "liblo oscsendfile: register then typed messages on one connection",
     scenario_oscsendfile),
    ("r3", "npm osc TCPSocketPort (SLIP) <-> python-osc 1.0", scenario_node),
    ("r4", "SuperCollider sclang (OSCRouterClient's way) <-> python-osc 1.1", scenario_sclang),
]


def main():
    global OSCGATE, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", required=True, help="path to the oscgate binary")
    ap.add_argument(
        "--only", action="append", help="run only these scenario ids (repeatable; r1 or r1/uring)"
    )
    args = ap.parse_args()
    OSCGATE = os.path.abspath(args.oscgate)

    def on_signal(signum, _frame):
        cleanup()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="oscgate-router-") as tmp:
        TMP = tmp
        return run_all(args.only)


def run_all(only):
    return cli.run_per_driver(SCENARIOS, DRIVERS, only, OSCGATE, BUDGET_S, HARD_STOP_S, cleanup)


if __name__ == "__main__":
    sys.exit(main())
