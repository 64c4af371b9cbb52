#!/usr/bin/env python3
"""Interop scenarios for the oscgate Messenger gateway (`oscgate run`).

Runs `oscgate run` with a loopback-only [messenger] configuration and drives it with patrons
and group members nobody here wrote: python-osc servers and clients (UDP, TCP in OSC 1.0
length-prefix mode and OSC 1.1 SLIP mode, bundles) and liblo's `oscsend` / `oscdump`. Every
scenario runs once per driver (`--driver mio`, then `--driver uring`; uring is skipped with
the reason when the kernel cannot run it). Each checks exact addresses, values and Python
types, that forwarded bytes are untouched, and that nothing comes back to its sender. Prints
one PASS/FAIL/SKIP line per scenario and driver and a last line `N passed, M failed`; exits
non-zero on any failure (a SKIP counts as a failure when OSCGATE_REQUIRE_ROOT_TESTS=1).

It does not build oscgate, install anything (see setup.sh), or send anything outside
127.0.0.0/8 and multicast sent with IP_MULTICAST_IF 127.0.0.1 and TTL 0 (liblo, which cannot
pick an interface, only runs inside a private network namespace whose only interface is lo).
Process management, ports and groups come from cli_scenarios.py.

Run with the venv from setup.sh: `.venv/bin/python messenger_scenarios.py --oscgate PATH`.
"""

import argparse
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cli_scenarios as cli  # noqa: E402  (helpers shared with the CLI scenarios)
from cli_scenarios import LOOPBACK, Fail, Skip, msg  # noqa: E402
from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_bundle import OscBundle  # noqa: E402
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder  # noqa: E402
from pythonosc.osc_server import BlockingOSCUDPServer  # noqa: E402
from pythonosc.tcp_client import TCPClient  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

BUDGET_S = 60.0  # whole run
HARD_STOP_S = 80  # SIGALRM if something still hangs
STARTUP_S = 5.0  # time for oscgate to print `oscgate: running`
WAIT_S = 3.0  # time for an expected packet to arrive
QUIET_S = 0.3  # how long "nothing else arrives" is watched
KEEPALIVE_S = 1  # messenger.keepalive_s in every test config
TIMEOUT_S = 2  # messenger.timeout_s in every test config
DRIVERS = ("mio", "uring")

PREFIX = "/messenger/gateway/"
REQUEST = PREFIX + "me/request"
ACCEPT = PREFIX + "me/accept"
DENY = PREFIX + "me/deny"
PATRON = PREFIX + "me/patron"
LEAVE = PREFIX + "me/leave"
SHUTDOWN = PREFIX + "me/shutdown"
WHO_ACTIVE = PREFIX + "who/active"
UID_RE = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
URING_UNUSABLE = "io_uring is not usable here"

OSCGATE = "oscgate"
TMP = None  # a TemporaryDirectory for the configs
CLEANUP = []  # callables closing python-side servers/clients of the running scenario
URING_SKIP = None  # the reason, once oscgate said uring cannot run here


def cleanup():
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except Exception:  # closing something already broken is not a finding
            pass
    cli.kill_all()


def new_uid():
    return str(uuid.uuid4()).upper()


# --------------------------------------------------------------------------------------
# the gateway
# --------------------------------------------------------------------------------------


class Gateway:
    """`oscgate run --driver DRIVER` on a fresh group and a kernel-chosen patron port."""

    _n = 0

    def __init__(self, driver):
        global URING_SKIP
        if driver == "uring" and URING_SKIP:
            raise Skip(URING_SKIP)
        self.driver = driver
        self.group = cli.unique_group()
        self.group_port = cli.udp_port()
        Gateway._n += 1
        path = os.path.join(TMP, f"gateway-{Gateway._n}.toml")
        with open(path, "w") as f:
            f.write(
                "[engine]\nworkers = 2\n"
                "[messenger]\n"
                f'group = "{self.group}:{self.group_port}"\n'
                f'interface = "{LOOPBACK}"\n'
                f'listen = "{LOOPBACK}:0"\n'
                "ttl = 0\n"
                f"keepalive_s = {KEEPALIVE_S}\ntimeout_s = {TIMEOUT_S}\n"
                "[router]\nenabled = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n"
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
        pattern = re.compile(r"messenger on ([\d.]+):(\d+) \(udp\+tcp\)")
        found = [m for m in map(pattern.search, self.proc.out) if m]
        if not found:
            raise Fail(f"oscgate printed no 'messenger on' line\n{self.proc.describe()}")
        self.addr = (found[0].group(1), int(found[0].group(2)))

    def terminate(self, timeout=5.0):
        """SIGTERM; asserts oscgate exits 0 within `timeout`."""
        os.kill(self.proc.p.pid, signal.SIGTERM)
        rc = self.proc.wait_exit(timeout)
        if rc is None:
            raise Fail(f"oscgate did not exit within {timeout} s of SIGTERM\n{self.proc.describe()}")
        if rc != 0:
            raise Fail(f"oscgate exited {rc} after SIGTERM, expected 0\n{self.proc.describe()}")


# --------------------------------------------------------------------------------------
# python-osc endpoints
# --------------------------------------------------------------------------------------


class Recorder:
    """Everything an endpoint received: raw packets and the messages python-osc decoded."""

    def __init__(self, name):
        self.name = name
        self.cond = threading.Condition()
        self.got = []  # (address, [args]) in arrival order, bundles unpacked by python-osc
        self.raw = []  # packets as they arrived (datagrams or TCP frames)

    def record(self, address, *args):
        with self.cond:
            self.got.append((address, list(args)))
            self.cond.notify_all()

    def record_raw(self, data):
        with self.cond:
            self.raw.append(bytes(data))
            self.cond.notify_all()

    def data(self):
        """Messages that are not `/messenger/gateway/...`."""
        with self.cond:
            return [g for g in self.got if not g[0].startswith(PREFIX)]

    def data_raw(self):
        with self.cond:
            return [r for r in self.raw if not r.startswith(PREFIX.encode())]

    def ctl(self, address):
        """Argument lists of every `address` message received."""
        with self.cond:
            return [args for a, args in self.got if a == address]

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
            return f"  [{self.name}] decoded: {self.got!r}\n  [{self.name}] raw: {self.raw!r}"


class RecordingUDPServer(BlockingOSCUDPServer):
    """python-osc's blocking UDP server that also keeps every datagram as it arrived."""

    recorder = None

    def verify_request(self, request, client_address):
        self.recorder.record_raw(request[0])
        return super().verify_request(request, client_address)


def serve(recorder, dispatcher, address, group=None):
    """A RecordingUDPServer on `address` (joined to `group` on loopback) served on a thread."""
    srv = RecordingUDPServer(address, dispatcher, bind_and_activate=False)
    srv.recorder = recorder
    if group:
        srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.server_bind()
    if group:
        mreq = socket.inet_aton(group) + socket.inet_aton(LOOPBACK)
        srv.socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()

    def close():
        srv.shutdown()
        srv.server_close()

    CLEANUP.append(close)
    return srv


class GroupMember(Recorder):
    """A python-osc UDP server joined to the Messenger group (an app on the multicast side)."""

    def __init__(self, gw, name="group"):
        super().__init__(name)
        d = Dispatcher()
        d.set_default_handler(self.record)
        self.server = serve(self, d, (gw.group, gw.group_port), group=gw.group)


def group_client(gw):
    """python-osc SimpleUDPClient sending to the group out of loopback only."""
    c = SimpleUDPClient(gw.group, gw.group_port)
    c._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    c._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    c._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    CLEANUP.append(c.close)
    return c


class PatronBase(Recorder):
    """What UDP and TCP patrons share: joining, leaving, checking the gateway's control messages."""

    def __init__(self, name, gw, answer):
        super().__init__(name)
        self.gw = gw
        self.uid = new_uid()
        self.answer = answer
        self.dispatcher = Dispatcher()
        self.dispatcher.set_default_handler(self.record)

    def send(self, packet):
        raise NotImplementedError

    def join(self):
        """Sends the request; asserts the accept names this patron; returns the gateway uid."""
        self.send(msg(REQUEST, (self.uid, "s")))
        if not self.wait(lambda: self.ctl(ACCEPT) or self.ctl(DENY)):
            raise Fail(f"{self.name}: no accept/deny within {WAIT_S} s\n{self.describe()}")
        if self.ctl(DENY):
            raise Fail(f"{self.name}: denied\n{self.describe()}")
        args = self.ctl(ACCEPT)[0]
        if len(args) != 2 or not all(isinstance(a, str) for a in args):
            raise Fail(f"{self.name}: accept is not ,ss: {args!r}")
        if args[1] != self.uid or not UID_RE.match(args[0]):
            raise Fail(f"{self.name}: accept {args!r} for uid {self.uid}")
        return args[0]

    def leave(self):
        self.send(msg(LEAVE, (self.uid, "s")))


class UdpPatron(PatronBase):
    """A python-osc BlockingOSCUDPServer as a patron: the request leaves through the server's
    own socket, and keepalives are answered by python-osc's handler-reply mechanism, which
    sends a handler's return value back to the datagram's source from that same socket."""

    def __init__(self, name, gw, answer=True):
        super().__init__(name, gw, answer)
        self.dispatcher.map(WHO_ACTIVE, self._active)
        self.server = serve(self, self.dispatcher, (LOOPBACK, 0))

    def _active(self, address, *args):
        self.record(address, *args)
        if self.answer:
            return (PATRON, self.uid)
        return None

    def send(self, packet):
        self.server.socket.sendto(packet.dgram, self.gw.addr)


class TcpPatron(PatronBase):
    """python-osc TCPClient (mode "1.0" length prefix or "1.1" SLIP) as a patron: its own
    receive() reads replies over the same connection on a reader thread; keepalives are
    answered over it too."""

    def __init__(self, name, gw, mode, answer=True):
        super().__init__(name, gw, answer)
        self.mode = mode
        self.client = TCPClient(gw.addr[0], gw.addr[1], mode=mode, timeout=2.0)
        self.send_lock = threading.Lock()
        self.eof = False
        self.error = None
        self.stop = threading.Event()
        self.dispatcher.map(WHO_ACTIVE, self._active)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        CLEANUP.append(self.close)

    def _active(self, address, *args):
        self.record(address, *args)
        if self.answer:
            self.send(msg(PATRON, (self.uid, "s")))

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
            for frame in frames:
                if not frame:
                    continue
                self.record_raw(frame)
                self.dispatcher.call_handlers_for_packet(frame, self.gw.addr)

    def send(self, packet):
        with self.send_lock:
            self.client.send(packet)

    def close(self):
        self.stop.set()
        self.reader.join(1.0)
        self.client.close()

    def describe(self):
        return super().describe() + f"\n  [{self.name}] eof={self.eof} error={self.error!r}"


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def typed(messages):
    """(address, args) with every value paired with its Python type (True must not equal 1)."""
    return [(a, [(type(v).__name__, v) for v in args]) for a, args in messages]


def expect_data(rec, expected, timeout=WAIT_S):
    """Waits until `rec` decoded len(expected) Messenger messages; asserts exactly those."""
    rec.wait(lambda: len(rec.data()) >= len(expected), timeout)
    got = rec.data()
    if typed(got) != typed(expected):
        raise Fail(
            f"{rec.name} received other messages than expected\n"
            + "".join(f"  expected: {m!r}\n" for m in typed(expected))
            + "".join(f"  actual:   {m!r}\n" for m in typed(got))
            + rec.describe()
        )


def expect_raw(rec, expected):
    """The Messenger packets `rec` received are byte for byte `expected` (forwarded untouched)."""
    got = rec.data_raw()
    if got != expected:
        raise Fail(f"{rec.name}: raw packets differ\n  expected: {expected!r}\n  actual:   {got!r}")


def expect_quiet(*recs):
    """Nothing more arrives at any of `recs` (each: (recorder, how many data messages it has))."""
    time.sleep(QUIET_S)
    for rec, n in recs:
        if len(rec.data()) != n:
            raise Fail(f"{rec.name}: expected {n} messages, got more\n{rec.describe()}")


def join_all(gw, patrons):
    uids = {p.name: p.join() for p in patrons}
    if len(set(uids.values())) != 1:
        raise Fail(f"patrons were accepted by different gateway uids: {uids!r}")
    return next(iter(uids.values()))


# --------------------------------------------------------------------------------------
# scenarios (each takes the driver name)
# --------------------------------------------------------------------------------------


def scenario_udp(driver):
    """Two python-osc UDP patrons, a silent one and a group member: group <-> patrons, not back
    to the sender; keepalives answered keep a patron, silence expels it; leave removes at once."""
    gw = Gateway(driver)
    a = UdpPatron("patron A", gw)
    b = UdpPatron("patron B", gw)
    silent = UdpPatron("silent patron", gw, answer=False)
    member = GroupMember(gw)
    gw_uid = join_all(gw, [a, b, silent])
    joined = time.monotonic()
    sender = group_client(gw)

    # The group -> every patron, types intact (python-osc infers i f s b T F N; h d explicit).
    sender.send_message("/interop/m1", [42, 2.5, "hello group", b"\x00\xc0\xff", True, False, None])
    explicit = msg("/interop/m1", (-5000000000, "h"), (0.1, "d"), ("", "s"))
    sender.send(explicit)
    from_group = [
        ("/interop/m1", [42, 2.5, "hello group", b"\x00\xc0\xff", True, False, None]),
        ("/interop/m1", [-5000000000, 0.1, ""]),
    ]
    expect_data(member, from_group)
    for p in (a, b, silent):
        expect_data(p, from_group)
        expect_raw(p, member.data_raw())

    # Patron A -> patron B and the group, not back to A.
    say = msg("/messenger/me/say", (new_uid(), "s"), (a.uid, "s"), ("hi from A", "s"))
    a.send(say)
    said = ("/messenger/me/say", [say.params[0], a.uid, "hi from A"])
    for p in (b, silent, member):
        expect_data(p, from_group + [said])
    expect_raw(b, member.data_raw())
    if b.data_raw()[-1] != say.dgram:
        raise Fail(f"patron B got other bytes than A sent\n{b.describe()}")

    # Keepalives: A and B answer (python-osc replies from the patron socket), the silent one
    # does not; after timeout_s only the silent one has been expelled.
    wait_until = joined + TIMEOUT_S + 0.8
    for p in (a, b, silent):
        if not p.wait(lambda p=p: len(p.ctl(WHO_ACTIVE)) >= 2, timeout=TIMEOUT_S + 2):
            raise Fail(f"{p.name}: fewer than 2 who/active within {TIMEOUT_S + 2} s\n{p.describe()}")
        if any(args != [gw_uid] for args in p.ctl(WHO_ACTIVE)):
            raise Fail(f"{p.name}: who/active without the gateway uid {gw_uid}: {p.ctl(WHO_ACTIVE)!r}")
    time.sleep(max(0.0, wait_until - time.monotonic()))
    sender.send_message("/interop/after", ["keepalive"])
    after = ("/interop/after", ["keepalive"])
    expect_data(a, from_group + [after])
    expect_data(b, from_group + [said, after])

    # A leaves: the next group message reaches B only.
    a.leave()
    # The leave has no answer to wait for; give the control thread ample time even on a busy
    # machine (0.2 s was seen to be too short under load).
    time.sleep(1.0)
    sender.send_message("/interop/left", [1])
    left = ("/interop/left", [1])
    expect_data(b, from_group + [said, after, left])
    expect_data(member, from_group + [said, after, left])
    expect_quiet((a, 3), (silent, 3), (b, 5), (member, 5))


def scenario_tcp(driver):
    """python-osc TCPClient patrons in mode 1.0 and 1.1 with a UDP patron and a group member."""
    gw = Gateway(driver)
    u = UdpPatron("udp patron", gw)
    t10 = TcpPatron("tcp 1.0 patron", gw, "1.0")
    t11 = TcpPatron("tcp 1.1 (SLIP) patron", gw, "1.1")
    member = GroupMember(gw)
    join_all(gw, [u, t10, t11])
    sender = group_client(gw)

    sender.send_message("/interop/tcp", [7, 0.5, "from the group", b"\xc0\xdb"])
    g = ("/interop/tcp", [7, 0.5, "from the group", b"\xc0\xdb"])
    expect_data(member, [g])
    for p in (u, t10, t11):
        expect_data(p, [g])
    expect_raw(t10, member.data_raw())
    expect_raw(t11, member.data_raw())

    # Each TCP patron -> the UDP patron, the other TCP patron (other framing) and the group.
    m10 = msg("/interop/from10", (10, "i"), ("len32", "s"))
    t10.send(m10)
    from10 = ("/interop/from10", [10, "len32"])
    expect_data(u, [g, from10])
    expect_data(t11, [g, from10])
    # SLIP's END/ESC bytes in a blob must arrive unescaped, in the other framing too.
    m11 = msg("/interop/from11", (b"\xc0\xdb\xdc\xdd", "b"), (True, "T"))
    t11.send(m11)
    from11 = ("/interop/from11", [b"\xc0\xdb\xdc\xdd", True])
    expect_data(u, [g, from10, from11])
    expect_data(t10, [g, from11])
    expect_data(member, [g, from10, from11])
    expect_raw(u, member.data_raw())
    expect_raw(t10, member.data_raw()[::2])
    expect_raw(t11, member.data_raw()[:2])
    if member.data_raw()[1:] != [m10.dgram, m11.dgram]:
        raise Fail(f"the group got other bytes than the TCP patrons sent\n{member.describe()}")
    expect_quiet((u, 3), (t10, 2), (t11, 2), (member, 3))


def scenario_bundle(driver):
    """A python-osc bundle of two messages from a patron arrives whole at UDP and TCP patrons."""
    gw = Gateway(driver)
    a = UdpPatron("patron A", gw)
    b = UdpPatron("patron B", gw)
    t = TcpPatron("tcp 1.1 patron", gw, "1.1")
    member = GroupMember(gw)
    join_all(gw, [a, b, t])

    bb = OscBundleBuilder(IMMEDIATELY)
    bb.add_content(msg("/interop/b/one", (1, "i"), (0.25, "f")))
    bb.add_content(msg("/interop/b/two", ("two", "s"), (b"\x01", "b")))
    bundle = bb.build()
    a.send(bundle)
    in_bundle = [("/interop/b/one", [1, 0.25]), ("/interop/b/two", ["two", b"\x01"])]
    for rec in (b, t, member):
        expect_data(rec, in_bundle)
        expect_raw(rec, [bundle.dgram])
        decoded = OscBundle(rec.data_raw()[0])
        addresses = [m.address for m in decoded]
        if decoded.num_contents != 2 or addresses != ["/interop/b/one", "/interop/b/two"]:
            raise Fail(f"{rec.name}: the bundle decodes to {list(decoded)!r}")

    # And the other way: a SLIP TCP patron's bundle reaches the UDP patrons as one datagram.
    tb = OscBundleBuilder(IMMEDIATELY)
    tb.add_content(msg("/interop/b/tcp", (3, "i")))
    tb.add_content(msg("/interop/b/tcp", ("x", "s")))
    tcp_bundle = tb.build()
    t.send(tcp_bundle)
    from_tcp = [("/interop/b/tcp", [3]), ("/interop/b/tcp", ["x"])]
    expect_data(a, from_tcp)
    expect_raw(a, [tcp_bundle.dgram])
    expect_data(b, in_bundle + from_tcp)
    expect_raw(b, [bundle.dgram, tcp_bundle.dgram])
    expect_quiet((a, 2), (b, 4), (t, 2), (member, 4))


def scenario_shutdown(driver):
    """SIGTERM: every UDP and TCP patron gets /messenger/gateway/me/shutdown; exit status 0."""
    gw = Gateway(driver)
    patrons = [
        UdpPatron("udp patron 1", gw),
        UdpPatron("udp patron 2", gw),
        TcpPatron("tcp 1.0 patron", gw, "1.0"),
        TcpPatron("tcp 1.1 patron", gw, "1.1"),
    ]
    gw_uid = join_all(gw, patrons)
    gw.terminate()
    for p in patrons:
        if not p.wait(lambda p=p: p.ctl(SHUTDOWN)):
            raise Fail(f"{p.name}: no {SHUTDOWN}\n{p.describe()}\n{gw.proc.describe()}")
        if p.ctl(SHUTDOWN) != [[gw_uid]]:
            raise Fail(f"{p.name}: expected one shutdown ,s {gw_uid}, got {p.ctl(SHUTDOWN)!r}")
    for p in patrons[2:]:
        if not p.wait(lambda p=p: p.eof):
            raise Fail(f"{p.name}: the connection was not closed after shutdown\n{p.describe()}")


def scenario_liblo(driver):
    """liblo oscsend to the group reaches a python-osc patron; liblo oscdump on the group sees a
    patron's message. Inside `unshare -n` (oscsend cannot choose the multicast interface)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip("cannot create a network namespace here (unshare -n failed)")
    if driver == "uring" and URING_SKIP:
        raise Skip(URING_SKIP)
    cp = cli.run(
        ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__), "--oscgate", OSCGATE,
         "--netns-liblo", driver],
        timeout=15,
    )
    try:
        result = json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail(f"netns helper gave no result (rc {cp.returncode}): {cp.stdout!r} {cp.stderr!r}")
    if result.get("skip"):
        raise Skip(result["skip"])
    if not result.get("ok"):
        raise Fail("(in netns) " + result.get("error", "unknown"))


ODUMP_STAMP = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8} ")


def netns_liblo(driver):
    """Runs inside `unshare -n`: lo up with the multicast route, then the liblo checks."""
    cli.run_ok(["ip", "link", "set", "lo", "up"])
    cli.run_ok(["ip", "route", "add", "224.0.0.0/4", "dev", "lo", "src", LOOPBACK])
    gw = Gateway(driver)
    url = f"osc.udp://{gw.group}:{gw.group_port}"
    od = cli.Proc(["oscdump", "-L", url], "oscdump")
    if not cli.wait_udp_bound(gw.group_port) or not od.alive():
        raise Fail(f"oscdump did not bind {url}\n{od.describe()}")
    p = UdpPatron("patron", gw)
    p.join()

    cli.run_ok(["oscsend", url, "/interop/liblo", "ihfdsTFN", "7", "-5000000000", "0.5", "0.25", "text"])
    uid = new_uid()
    cli.run_ok(["oscsend", url, "/messenger/me/introduce", "sss", uid, "liblo user", "oscsend"])
    expect_data(
        p,
        [
            ("/interop/liblo", [7, -5000000000, 0.5, 0.25, "text", True, False, None]),
            ("/messenger/me/introduce", [uid, "liblo user", "oscsend"]),
        ],
    )

    p.send(msg("/interop/to-liblo", (3, "i"), ("from a patron", "s")))
    od.wait_for("out", lambda _line: True, count=3)
    got = [ODUMP_STAMP.sub("", line) for line in od.out]
    expected = [
        '/interop/liblo ihfdsTFN 7 -5000000000 0.500000 0.250000 "text" #T #F Nil',
        f'/messenger/me/introduce sss "{uid}" "liblo user" "oscsend"',
        '/interop/to-liblo is 3 "from a patron"',
    ]
    if got != expected:
        raise Fail(
            "oscdump output differs\n"
            + "".join(f"  expected: {line}\n" for line in expected)
            + "".join(f"  actual:   {line}\n" for line in got)
            + od.describe()
        )
    expect_quiet((p, 2))


SCENARIOS = [
    ("m1", "python-osc UDP patrons: group <-> patrons, keepalive, expiry, leave", scenario_udp),
    ("m2", "python-osc TCP patrons (1.0 and 1.1 SLIP) with a UDP patron", scenario_tcp),
    ("m3", "liblo oscsend/oscdump on the group <-> python-osc patron (netns)", scenario_liblo),
    ("m4", "python-osc bundles between patrons, whole", scenario_bundle),
    ("m5", "SIGTERM: shutdown to UDP and TCP patrons, exit 0", scenario_shutdown),
]


def main():
    global OSCGATE, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", required=True, help="path to the oscgate binary")
    ap.add_argument(
        "--only", action="append", help="run only these scenario ids (repeatable; m1 or m1/uring)"
    )
    ap.add_argument("--netns-liblo", choices=DRIVERS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    OSCGATE = os.path.abspath(args.oscgate)

    def on_signal(signum, _frame):
        cleanup()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="oscgate-messenger-") as tmp:
        TMP = tmp
        if args.netns_liblo:
            try:
                netns_liblo(args.netns_liblo)
                result = {"ok": True}
            except Skip as e:
                result = {"ok": False, "skip": str(e)}
            except Exception as e:  # reported to the outer run as a failure
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            finally:
                cleanup()
            print(json.dumps(result), flush=True)
            return 0
        return run_all(args.only)


def run_all(only):
    return cli.run_per_driver(SCENARIOS, DRIVERS, only, OSCGATE, BUDGET_S, HARD_STOP_S, cleanup)


if __name__ == "__main__":
    sys.exit(main())
