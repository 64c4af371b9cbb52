#!/usr/bin/env python3
"""Interop scenarios for oscgate's OSChat node (`oscgate run`, `[oschat]`).

Runs `oscgate run` as an OSChat node on loopback only (`interfaces = ["lo"]`, a port picked by
the kernel, broadcasts to 127.255.255.255) and drives it with OSC software nobody here wrote:
python-osc (a UDP client broadcasting, a dispatcher-based server sharing the OSChat port),
liblo's `oscsend`, Pure Data (`[oscformat]` + `[netsend -u -b]`, which sends floats) and npm
`osc` (osc.js) `UDPPort` in oschat_client.js; and hostile datagrams from plain sockets. Every
scenario runs once per driver (`--driver mio`, then `--driver uring`; uring is skipped with the
reason when the kernel cannot run it) and checks exactly what the node broadcasts back: the
list replies (address, `,is` type tags, sequence, name), that an empty list gets no reply,
that a repeated request is answered once, and that nothing else is sent. Prints one
PASS/FAIL/SKIP line per scenario and driver and a last line `N passed, M failed`; exits
non-zero on any failure (a SKIP counts as a failure when OSCGATE_REQUIRE_ROOT_TESTS=1).

How a listener shares the port with the node (observed on Linux 6.18): the node's socket is
bound to 0.0.0.0:P on device lo with SO_REUSEADDR and SO_REUSEPORT. A second socket bound to
0.0.0.0:P with SO_REUSEPORT after it takes the *unicast* datagrams sent to 127.0.0.1:P (the
node never sees them), so listeners here that sit beside a unicast sender bind
127.255.255.255:P, which hears broadcasts only. Where every request is a broadcast
(python-osc, osc.js), the listener binds 0.0.0.0:P as a real OSChat client does.

It does not build oscgate, install anything (see setup.sh), or send anything outside
127.0.0.0/8. Process management and ports come from cli_scenarios.py.

Run with the venv from setup.sh: `.venv/bin/python oschat_scenarios.py --oscgate PATH`.
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cli_scenarios as cli  # noqa: E402  (helpers shared with the CLI scenarios)
from cli_scenarios import LOOPBACK, Fail, Skip, msg  # noqa: E402
from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_message import OscMessage  # noqa: E402
from pythonosc.osc_server import BlockingOSCUDPServer  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

BUDGET_S = 60.0  # whole run
HARD_STOP_S = 80  # SIGALRM if something still hangs
STARTUP_S = 5.0  # time for oscgate to print `oscgate: running`
WAIT_S = 3.0  # time for an expected reply to arrive
QUIET_S = 0.3  # how long "nothing else arrives" is watched
PD_S = 10.0  # Pure Data: start, send, quit (the patch quits itself after 300 ms)
NODE_S = 8.0  # oschat_client.js: start, exchange, exit (it gives up itself after 5 s)
STOP_S = 5.0  # time for oscgate to exit after SIGTERM
DRIVERS = ("mio", "uring")

BROADCAST = "127.255.255.255"
URING_UNUSABLE = "io_uring is not usable here"
LIST_USERS = "/oschat/list/users"
LIST_ROOMS = "/oschat/list/rooms"
REPLY_TAGS = ",is"
MAX_DATAGRAM = 16 * 1024  # oscgate drops longer datagrams as truncated (README)

OSCGATE = "oscgate"
TMP = None  # a TemporaryDirectory for configs and patches
CLEANUP = []  # callables closing python-side sockets and servers of the running scenario
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
# the node
# --------------------------------------------------------------------------------------


class Node:
    """`oscgate run --driver DRIVER` with only `[oschat]` on lo, on a kernel-picked port."""

    _n = 0

    def __init__(self, driver):
        global URING_SKIP
        if driver == "uring" and URING_SKIP:
            raise Skip(URING_SKIP)
        self.driver = driver
        self.guid = str(uuid.uuid4()).upper()
        Node._n += 1
        path = os.path.join(TMP, f"oschat-{Node._n}.toml")
        with open(path, "w") as f:
            f.write(
                "[messenger]\nenabled = false\n[router]\nenabled = false\n[http]\nenabled = false\n"
                f'[oschat]\ninterfaces = ["lo"]\nport = 0\nnode = "{self.guid}"\n'
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
        pattern = re.compile(
            r"^oscgate: oschat node (\S+) on port (\d+) \(lo 127\.0\.0\.0/8\), driver (\S+)$"
        )
        found = [m for m in map(pattern.match, self.proc.out) if m]
        if len(found) != 1:
            raise Fail(f"oscgate printed no single 'oschat node' line\n{self.proc.describe()}")
        guid, port, shown = found[0].groups()
        if guid != self.guid or shown != driver:
            raise Fail(
                f"oscgate announced node {guid} driver {shown}, configured {self.guid} {driver}\n"
                f"{self.proc.describe()}"
            )
        self.port = int(port)
        self.unicast = (LOOPBACK, self.port)

    def expect_alive(self):
        if not self.proc.alive():
            raise Fail(f"oscgate exited (status {self.proc.p.poll()})\n{self.proc.describe()}")
        self.expect_no_panic()

    def expect_no_panic(self):
        bad = [line for line in self.proc.err if "panicked" in line or "RUST_BACKTRACE" in line]
        if bad:
            raise Fail(f"oscgate panicked: {bad!r}\n{self.proc.describe()}")

    def expect_no_error_log(self):
        bad = [line for line in self.proc.err if "ERROR" in line]
        if bad:
            raise Fail(f"oscgate logged errors: {bad!r}\n{self.proc.describe()}")

    def terminate(self):
        """SIGTERM; asserts oscgate exits 0 within STOP_S without a panic."""
        os.kill(self.proc.p.pid, signal.SIGTERM)
        rc = self.proc.wait_exit(STOP_S)
        if rc is None:
            raise Fail(f"oscgate did not exit within {STOP_S} s of SIGTERM\n{self.proc.describe()}")
        self.expect_no_panic()
        if rc != 0:
            raise Fail(f"oscgate exited {rc} after SIGTERM, expected 0\n{self.proc.describe()}")


# --------------------------------------------------------------------------------------
# what was heard
# --------------------------------------------------------------------------------------


def type_tags(dgram):
    """The type tag string of an OSC message (`,is`), read from its bytes."""
    end = dgram.index(b"\0")
    start = (end // 4 + 1) * 4
    return dgram[start : dgram.index(b"\0", start)].decode("ascii")


def decode(dgram):
    """(address, type tags, args) as python-osc decodes the message, or why it could not."""
    try:
        m = OscMessage(dgram)
        return (m.address, type_tags(dgram), list(m.params))
    except Exception as e:  # shown in the comparison, which then fails
        return ("<undecodable>", repr(e), [dgram[:64].hex()])


def reply(address, seq, name):
    """A list reply as the node must send it: `,is <seq> <name>`."""
    return (address, REPLY_TAGS, [seq, name])


def show(items):
    return "".join(f"    {item!r}\n" for item in items)


class Heard:
    """Every datagram a listener received: (source, address, type tags, args), in order."""

    def __init__(self, name):
        self.name = name
        self.cond = threading.Condition()
        self.got = []

    def record(self, source, decoded):
        with self.cond:
            self.got.append((tuple(source), *decoded))
            self.cond.notify_all()

    def from_port(self, port):
        """What came from source port `port` (the node sends from its OSChat port)."""
        with self.cond:
            return [g[1:] for g in self.got if g[0][1] == port]

    def not_from_port(self, port):
        with self.cond:
            return [g[1:] for g in self.got if g[0][1] != port]

    def wait(self, pred, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
            return True

    def describe(self):
        with self.cond:
            return f"  [{self.name}] heard (source, address, tags, args):\n{show(self.got)}"


class Listener(Heard):
    """A plain UDP socket on `bind`, read on a thread; `shared` sets SO_REUSEADDR and
    SO_REUSEPORT so that it can bind the node's port."""

    def __init__(self, name, bind, shared=False):
        super().__init__(name)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if shared:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self.sock.bind(bind)
        except OSError as e:
            self.sock.close()
            raise Fail(f"{name}: cannot bind {bind}: {e}")
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        CLEANUP.append(self.close)

    def _read(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                data, source = self.sock.recvfrom(65536)
                self.record(source, decode(data))

    def close(self):
        self.stop.set()
        self.reader.join(1.0)
        self.sock.close()


def broadcast_listener(node):
    """Hears what the node broadcasts, and nothing sent to 127.0.0.1 (see the module doc)."""
    return Listener("listener on 127.255.255.255", (BROADCAST, node.port), shared=True)


def expect_node(heard, node, expected, what, timeout=WAIT_S):
    """Waits until `heard` has len(expected) datagrams from the node; asserts they are exactly
    `expected` (in any order)."""
    heard.wait(lambda: len(heard.from_port(node.port)) >= len(expected), timeout)
    got = heard.from_port(node.port)
    if sorted(got, key=repr) != sorted(expected, key=repr):
        raise Fail(
            f"{what}: the node broadcast other datagrams than expected\n"
            f"  expected:\n{show(expected)}  actual:\n{show(got)}{heard.describe()}"
        )


def expect_quiet(heard, node, n):
    """Nothing more comes from the node than the `n` datagrams already checked."""
    time.sleep(QUIET_S)
    got = heard.from_port(node.port)
    if len(got) != n:
        raise Fail(f"the node broadcast {len(got)} datagrams, expected {n}\n{heard.describe()}")


def need(tool, hint):
    path = shutil.which(tool)
    if not path:
        raise Fail(f"{tool} not found on PATH: {hint}")
    return path


# --------------------------------------------------------------------------------------
# o1: python-osc
# --------------------------------------------------------------------------------------


class SharedPortServer(BlockingOSCUDPServer):
    """python-osc's blocking dispatcher-based UDP server on the OSChat port, sharing it with
    the node as an OSChat client on the same host must: SO_REUSEADDR and SO_REUSEPORT are set
    before bind. It keeps each datagram's type tags for the dispatcher's handler."""

    last_tags = None

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def verify_request(self, request, client_address):
        try:
            self.last_tags = type_tags(request[0])
        except (ValueError, UnicodeDecodeError) as e:
            self.last_tags = f"<bad: {e}>"
        return super().verify_request(request, client_address)


def python_osc_server(port):
    heard = Heard("python-osc server on 0.0.0.0")
    d = Dispatcher()

    def on_message(client_address, address, *args):
        heard.record(client_address, (address, srv.last_tags, list(args)))

    d.set_default_handler(on_message, needs_reply_address=True)
    try:
        srv = SharedPortServer(("0.0.0.0", port), d)
    except OSError as e:
        raise Fail(f"python-osc server cannot bind 0.0.0.0:{port} beside the node: {e}")
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()

    def close():
        srv.shutdown()
        srv.server_close()

    CLEANUP.append(close)
    return heard


def scenario_python(driver):
    """python-osc SimpleUDPClient broadcasts hellos, a join, chat messages and list requests;
    a python-osc server on the OSChat port checks the replies exactly."""
    node = Node(driver)
    heard = python_osc_server(node.port)
    client = SimpleUDPClient(BROADCAST, node.port, allow_broadcast=True)
    CLEANUP.append(client.close)
    sent = []
    expected = []

    def send(address, value):
        client.send_message(address, value)
        sent.append(address)

    def ask(address, seq, names, what):
        send(address, seq)
        expected.extend(reply(address, seq, n) for n in names)
        expect_node(heard, node, expected, what)

    send("/oschat/hello/alice", 1)
    send("/oschat/hello/bob", 2)
    send("/oschat/join/stage/alice", 3)
    # Chat-only users (`,ssi`, `,ss`, `,s` = Nobody) are known, in their rooms, never listed.
    send("/oschat/message/stage", ["hi all", "carol", 4])
    send("/oschat/message/stage", ["hello", "dave"])
    send("/oschat/message/void", ["anyone?"])
    ask(LIST_USERS, 10, ["alice", "bob"], "users (connectable only)")
    ask(LIST_USERS + "/stage", 11, ["alice"], "users in stage")
    ask(LIST_ROOMS, 12, ["stage"], "rooms (void has no connectable user)")
    # Empty lists: nobody joined backstage; void holds only Nobody. The node answers in order,
    # so the reply to 15 arriving alone shows that 13 and 14 got none.
    send(LIST_USERS + "/backstage", 13)
    send(LIST_USERS + "/void", 14)
    ask(LIST_ROOMS, 15, ["stage"], "empty lists get no reply")
    # The same request twice: answered once (the reply to 17 comes after any second answer).
    send(LIST_USERS, 16)
    send(LIST_USERS, 16)
    expected.extend([reply(LIST_USERS, 16, "alice"), reply(LIST_USERS, 16, "bob")])
    ask(LIST_ROOMS, 17, ["stage"], "a repeated request is answered once")
    expect_quiet(heard, node, len(expected))
    # The server heard every broadcast the client sent (the repeat really went out twice).
    own = [g[0] for g in heard.not_from_port(node.port)]
    if own != sent:
        raise Fail(
            f"the python-osc server did not hear exactly the client's broadcasts\n"
            f"  sent:\n{show(sent)}  heard:\n{show(own)}{heard.describe()}"
        )
    node.expect_alive()


# --------------------------------------------------------------------------------------
# o2: liblo oscsend
# --------------------------------------------------------------------------------------


def scenario_liblo(driver):
    """liblo oscsend (unicast: it does not set SO_BROADCAST) sends hello, join, a chat message
    and list requests with `i`, `h` and `d` sequences; a listener checks the replies."""
    need("oscsend", "run tools/interop/setup.sh (Debian package liblo-tools)")
    node = Node(driver)
    heard = broadcast_listener(node)
    url = f"osc.udp://{LOOPBACK}:{node.port}"
    expected = []

    def oscsend(address, types, *args):
        cli.run_ok(["oscsend", url, address, types, *args])

    def ask(address, types, seq, names, what):
        oscsend(address, types, seq)
        expected.extend(reply(address, int(seq), n) for n in names)
        expect_node(heard, node, expected, what)

    oscsend("/oschat/hello/liblo-user", "i", "1")
    oscsend("/oschat/join/liblo-room/liblo-user", "i", "2")
    oscsend("/oschat/message/liblo-room", "ssi", "hi from liblo", "liblo-user", "3")
    ask(LIST_USERS, "i", "4", ["liblo-user"], "users (sequence as i)")
    ask(LIST_USERS + "/liblo-room", "h", "5", ["liblo-user"], "users in liblo-room (sequence as h)")
    ask(LIST_ROOMS, "d", "6", ["liblo-room"], "rooms (sequence as d)")
    expect_quiet(heard, node, len(expected))
    if heard.not_from_port(node.port):
        raise Fail(f"the listener heard broadcasts that are not the node's\n{heard.describe()}")
    node.expect_alive()


# --------------------------------------------------------------------------------------
# o3: Pure Data
# --------------------------------------------------------------------------------------


def pd_patch(targets, sends):
    """A Pd patch that, on load, connects one `[netsend -u -b]` per (host, port) in `targets`,
    sends every (oscformat address parts, message box) in `sends` in order through
    `[oscformat]` to all of them, and quits 300 ms later."""
    lines = ["#N canvas 0 50 800 600 10;"]
    wires = []

    def add(kind, text):
        lines.append(f"#X {kind} 10 {10 + 20 * (len(lines) - 1)} {text};")
        return len(lines) - 2

    load = add("obj", "loadbang")
    # [t b ...] fires right to left: connect first, then the sends in order, then the quit.
    trig = add("obj", "t " + " ".join(["b"] * (len(sends) + 2)))
    wires.append((load, 0, trig, 0))
    prepend = add("obj", "list prepend send")
    trim = add("obj", "list trim")
    wires.append((prepend, 0, trim, 0))
    status = add("obj", "print pd-netsend")
    for host, port in targets:
        connect = add("msg", f"connect {host} {port}")
        netsend = add("obj", "netsend -u -b")
        wires += [(trig, len(sends) + 1, connect, 0), (connect, 0, netsend, 0)]
        wires += [(trim, 0, netsend, 0), (netsend, 0, status, 0)]
    for k, (parts, box) in enumerate(sends):
        value = add("msg", box)
        fmt = add("obj", "oscformat " + " ".join(parts))
        wires += [(trig, len(sends) - k, value, 0), (value, 0, fmt, 0), (fmt, 0, prepend, 0)]
    delay = add("obj", "del 300")
    quit_box = add("msg", "\\; pd quit")
    wires += [(trig, 0, delay, 0), (delay, 0, quit_box, 0)]
    lines += [f"#X connect {a} {o} {b} {i};" for a, o, b, i in wires]
    return "\n".join(lines) + "\n"


def scenario_pd(driver):
    """Pure Data sends hello and list requests with float sequences and a `,ss` chat message
    via [oscformat] + [netsend -u -b]; a listener checks the node answers naming pd-user."""
    need("pd", "run tools/interop/setup.sh (Debian package puredata-core)")
    node = Node(driver)
    heard = broadcast_listener(node)
    # A copy of everything Pd sends goes here, to check what Pd really put on the wire.
    capture = Listener("capture of Pd's datagrams", (LOOPBACK, 0))
    sends = [
        (["oschat", "hello", "pd-user"], "7"),
        (["oschat", "message", "pd-room"], "list hi pd-user"),
        (["oschat", "list", "users"], "8"),
        (["oschat", "list", "rooms"], "9"),
        (["oschat", "list", "users", "pd-room"], "10"),
    ]
    path = os.path.join(TMP, f"oschat-{driver}.pd")
    with open(path, "w") as f:
        f.write(pd_patch([(LOOPBACK, node.port), (LOOPBACK, capture.port)], sends))
    pd = cli.Proc(
        ["pd", "-nogui", "-nosound", "-nomidi", "-noprefs", "-stderr", "-open", path], "pd"
    )
    rc = pd.wait_exit(PD_S)
    if rc != 0:
        raise Fail(f"pd exited {rc} (None = still running after {PD_S} s)\n{pd.describe()}")
    pd_sent = [
        ("/oschat/hello/pd-user", ",f", [7.0]),
        ("/oschat/message/pd-room", ",ss", ["hi", "pd-user"]),
        (LIST_USERS, ",f", [8.0]),
        (LIST_ROOMS, ",f", [9.0]),
        (LIST_USERS + "/pd-room", ",f", [10.0]),
    ]
    capture.wait(lambda: len(capture.got) >= len(pd_sent))
    got = [g[1:] for g in capture.got]
    if got != pd_sent:
        raise Fail(
            f"Pd did not send the expected datagrams\n  expected:\n{show(pd_sent)}"
            f"  actual:\n{show(got)}{pd.describe()}"
        )
    expected = [
        reply(LIST_USERS, 8, "pd-user"),
        reply(LIST_ROOMS, 9, "pd-room"),
        reply(LIST_USERS + "/pd-room", 10, "pd-user"),
    ]
    expect_node(heard, node, expected, "replies to Pd's float sequences")
    expect_quiet(heard, node, len(expected))
    node.expect_alive()


# --------------------------------------------------------------------------------------
# o4: osc.js UDPPort
# --------------------------------------------------------------------------------------


def js(address, *args):
    """A message as oschat_client.js prints it: osc.js's metadata form."""
    return {"address": address, "args": [{"type": t, "value": v} for t, v in args]}


def scenario_node(driver):
    """osc.js UDPPort on the OSChat port broadcasts hello, join, a chat message and three list
    requests and prints what it hears; the replies must be exactly the node's answers."""
    need("node", "run tools/interop/setup.sh (Debian packages nodejs, npm)")
    if not os.path.isfile(os.path.join(HERE, "node_modules", "osc", "package.json")):
        raise Fail(f"npm osc is not installed in {HERE}/node_modules: run tools/interop/setup.sh")
    node = Node(driver)
    user, room = "js-user", "js-room"
    client = cli.Proc(
        ["node", os.path.join(HERE, "oschat_client.js"), node.port, user, room],
        "node oschat_client.js",
    )
    rc = client.wait_exit(NODE_S)
    if rc is None:
        raise Fail(f"oschat_client.js still running after {NODE_S} s\n{client.describe()}")
    out = client.out
    bound = [line for line in out if line.startswith("BOUND ")]
    plain = [line for line in out if line.startswith("PLAIN ")]
    # A plain UDPPort either shares the port (a future osc.js) or fails with EADDRINUSE and the
    # script hands osc.js a socket made with reuseAddr.
    if not (bound == ["BOUND plain"] and plain == ["PLAIN ok"]) and not (
        bound == ["BOUND shared"] and plain == ["PLAIN EADDRINUSE"]
    ):
        raise Fail(f"oschat_client.js did not bind as expected\n{client.describe()}")

    def parsed(prefix):
        try:
            return [json.loads(line[len(prefix) :]) for line in out if line.startswith(prefix)]
        except ValueError:
            raise Fail(f"not JSON after {prefix!r}\n{client.describe()}")

    sent, recv = parsed("SENT "), parsed("RECV ")
    want_sent = [
        js(f"/oschat/hello/{user}", ("i", 21)),
        js(f"/oschat/join/{room}/{user}", ("i", 22)),
        js(f"/oschat/message/{room}", ("s", "hi from osc.js"), ("s", user), ("i", 23)),
        js(LIST_USERS, ("i", 24)),
        js(f"{LIST_USERS}/{room}", ("i", 25)),
        js(LIST_ROOMS, ("i", 26)),
    ]
    if sent != want_sent:
        raise Fail(f"oschat_client.js sent other messages\n{client.describe()}")
    # It hears its own broadcasts (same port) and the node's replies; nothing else.
    echoes = [r for r in recv if r in sent]
    replies = [r for r in recv if r not in sent]
    want_replies = [
        js(LIST_USERS, ("i", 24), ("s", user)),
        js(f"{LIST_USERS}/{room}", ("i", 25), ("s", user)),
        js(LIST_ROOMS, ("i", 26), ("s", room)),
    ]
    if echoes != sent or sorted(replies, key=repr) != sorted(want_replies, key=repr):
        raise Fail(
            f"osc.js heard other packets than its own broadcasts and the node's replies\n"
            f"  expected replies:\n{show(want_replies)}  actual replies:\n{show(replies)}"
            f"  own broadcasts heard back: {len(echoes)} of {len(sent)}\n{client.describe()}"
        )
    if rc != 0:
        raise Fail(f"oschat_client.js exited {rc}, expected 0\n{client.describe()}")
    node.expect_alive()


# --------------------------------------------------------------------------------------
# o5: hostile input
# --------------------------------------------------------------------------------------


def raw_message(address, tags, payload=b""):
    """An OSC message from raw parts (address bytes may be anything)."""

    def pad(b):
        return b + b"\0" * (4 - len(b) % 4)

    return pad(address) + pad(tags) + payload


def hostile_datagrams():
    """(what, bytes) pairs none of which may change the node's state or stop it."""
    rng = random.Random(20250003)  # fixed: a failure can be replayed

    def noise(n):
        return bytes(rng.randrange(256) for _ in range(n))

    def d(address, *typed_args):
        return msg(address, *typed_args).dgram

    hello = d("/oschat/hello/trunc", (5, "i"))
    too_big = MAX_DATAGRAM + 16
    user, text = ("survivor", "s"), ("x", "s")
    return [
        ("empty datagram", b""),
        ("random bytes", noise(37)),
        ("random bytes starting with /oschat", b"/oschat" + noise(29)),
        ("address without NUL", b"/oschat/hello/x"),
        ("truncated hello (int cut)", hello[:-2]),
        ("truncated hello (no int)", hello[:-4]),
        ("bundle claiming 2 GiB", b"#bundle\0" + b"\0" * 7 + b"\1" + struct.pack(">i", 0x7FFFFFF0)),
        ("hello ,s", d("/oschat/hello/ghost1", ("1", "s"))),
        ("hello ,f 1.5", d("/oschat/hello/ghost2", (1.5, "f"))),
        ("hello ,ii", d("/oschat/hello/ghost3", (1, "i"), (2, "i"))),
        ("hello without argument", d("/oschat/hello/ghost4")),
        ("hello ,b", d("/oschat/hello/ghost5", (b"\x00\x01", "b"))),
        ("hello with an empty address part", d("/oschat/hello//ghost6", (1, "i"))),
        ("hello with extra address parts", d("/oschat/hello/ghost7/x/y", (1, "i"))),
        ("hello with a non-UTF-8 name",
         raw_message(b"/oschat/hello/\xff\xfe", b",i", struct.pack(">i", 1))),
        ("join ,s", d("/oschat/join/ghostroom1/survivor", text)),
        ("join ,f 0.5", d("/oschat/join/ghostroom2/survivor", (0.5, "f"))),
        ("message ,i", d("/oschat/message/ghostroom3", (5, "i"))),
        ("message ,sss", d("/oschat/message/ghostroom4", text, user, ("1", "s"))),
        ("message ,ssf 1.5", d("/oschat/message/ghostroom5", text, user, (1.5, "f"))),
        ("message ,ssis", d("/oschat/message/ghostroom6", text, user, (1, "i"), text)),
        ("list users ,f 41.5", d(LIST_USERS, (41.5, "f"))),
        ("list users ,s", d(LIST_USERS, ("42", "s"))),
        ("list rooms ,iss", d(LIST_ROOMS, (43, "i"), ("a", "s"), ("b", "s"))),
        ("list users in a room ,T", d(LIST_USERS + "/realroom", (True, "T"))),
        ("list rooms ,ib", d(LIST_ROOMS, (44, "i"), (b"\xff", "b"))),
        ("unknown /oschat address", d("/oschat/shout/survivor", (1, "i"))),
        ("hello over 16 KiB", d("/oschat/hello/" + "g" * too_big, (1, "i"))),
        ("chat message over 16 KiB",
         d("/oschat/message/bigroom", ("m" * too_big, "s"), user, (9, "i"))),
        ("64 000 random bytes", noise(64000)),
    ]


def scenario_hostile(driver):
    """Garbage, truncated messages, wrong argument types and datagrams over 16 KiB change
    nothing: the node still answers, with exactly the users and rooms it had, and exits 0."""
    node = Node(driver)
    heard = broadcast_listener(node)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    CLEANUP.append(s.close)
    expected = []

    def send(m):
        s.sendto(m.dgram, node.unicast)

    def ask(address, seq, names, what):
        send(msg(address, (seq, "i")))
        expected.extend(reply(address, seq, n) for n in names)
        expect_node(heard, node, expected, what)

    send(msg("/oschat/hello/survivor", (1, "i")))
    send(msg("/oschat/join/realroom/survivor", (2, "i")))
    ask(LIST_USERS, 3, ["survivor"], "before the hostile input")
    for what, data in hostile_datagrams():
        try:
            s.sendto(data, node.unicast)
        except OSError as e:
            raise Fail(f"could not send {what} ({len(data)} bytes): {e}")
    node.expect_alive()
    send(msg("/oschat/hello/survivor2", (4, "i")))
    # Had any of it been taken, a ghost user or room would be listed, or a bad list request
    # answered.
    ask(LIST_USERS, 50, ["survivor", "survivor2"], "users after the hostile input")
    ask(LIST_ROOMS, 51, ["realroom"], "rooms after the hostile input")
    ask(LIST_USERS + "/realroom", 52, ["survivor"], "users in realroom after the hostile input")
    expect_quiet(heard, node, len(expected))
    node.expect_alive()
    node.terminate()
    node.expect_no_error_log()


SCENARIOS = [
    ("o1", "python-osc: broadcast client + server on the OSChat port; lists, empty, repeat",
     scenario_python),
    ("o2", "liblo oscsend (unicast, i/h/d sequences) -> list replies", scenario_liblo),
    ("o3", "Pure Data [oscformat] + [netsend -u -b]: float sequences accepted", scenario_pd),
    ("o4", "npm osc UDPPort on the OSChat port: hello, join, message, lists", scenario_node),
    ("o5", "hostile datagrams: nothing taken, still answering, clean exit", scenario_hostile),
]


def main():
    global OSCGATE, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", required=True, help="path to the oscgate binary")
    ap.add_argument(
        "--only", action="append", help="run only these scenario ids (repeatable; o1 or o1/uring)"
    )
    args = ap.parse_args()
    OSCGATE = os.path.abspath(args.oscgate)

    def on_signal(signum, _frame):
        cleanup()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="oscgate-oschat-") as tmp:
        TMP = tmp
        return run_all(args.only)


def run_all(only):
    return cli.run_per_driver(SCENARIOS, DRIVERS, only, OSCGATE, BUDGET_S, HARD_STOP_S, cleanup)


if __name__ == "__main__":
    sys.exit(main())
