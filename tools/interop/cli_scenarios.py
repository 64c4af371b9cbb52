#!/usr/bin/env python3
"""Interop scenarios for the oscgate CLI (`oscgate dump` and `oscgate send`).

Drives oscgate against clients nobody here wrote: python-osc (UDP, TCP 1.0 length prefix,
TCP 1.1 SLIP, bundles) and liblo's `oscsend` / `oscdump`. Every scenario asserts exact output
lines (types included), uses loopback ports picked at run time and unique 239.255.x.y groups,
and kills every process it started, also on failure. Prints one PASS/FAIL line per scenario
and a last line `N passed, M failed`; exits non-zero on any failure.

It does not build oscgate, install anything (see setup.sh), or send anything outside
127.0.0.0/8 and multicast sent with IP_MULTICAST_IF 127.0.0.1 and TTL 0.

Run with the venv from setup.sh: `.venv/bin/python cli_scenarios.py --oscgate PATH`.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

LOOPBACK = "127.0.0.1"
BUDGET_S = 60.0  # whole run
HARD_STOP_S = 80  # SIGALRM if something still hangs
STARTUP_S = 5.0  # time for a process to report it is ready
LINE_S = 3.0  # time for an expected output line to appear

OSCGATE = "oscgate"
RNG = random.SystemRandom()


class Fail(Exception):
    """A scenario assertion failed."""


class Skip(Exception):
    """A scenario cannot run on this machine (not counted as passed or failed)."""


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------

LIVE = []  # every Proc started and not yet reaped


class Proc:
    """A child process in its own process group, its stdout/stderr collected line by line."""

    def __init__(self, argv, name):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.out = []
        self.err = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        LIVE.append(self)
        self.readers = [
            threading.Thread(target=self._read, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self.readers:
            t.start()

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                sink.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, which, pred, count=1, timeout=LINE_S):
        """Waits until `count` lines of stdout/stderr satisfy `pred`; returns whether they did."""
        sink = self.out if which == "out" else self.err
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for line in sink if pred(line)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
            return True

    def wait_exit(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self.readers:
            t.join(1.0)
        return rc

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        if self in LIVE:
            LIVE.remove(self)

    def describe(self):
        return (
            f"  [{self.name}] argv: {' '.join(self.argv)}\n"
            f"  [{self.name}] stdout: {self.out!r}\n"
            f"  [{self.name}] stderr: {self.err!r}"
        )


def kill_all():
    for proc in list(LIVE):
        proc.kill()


def run(argv, timeout=5.0):
    """Runs a short-lived command to completion; returns CompletedProcess (killed on timeout)."""
    argv = [str(a) for a in argv]
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # TERM first so a nested run of this script (the netns helper) can kill its own children.
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        raise Fail(f"`{' '.join(argv)}` did not finish within {timeout} s; stderr={err!r}")
    return subprocess.CompletedProcess(argv, p.returncode, out.decode(), err.decode())


def run_ok(argv, timeout=5.0):
    cp = run(argv, timeout)
    if cp.returncode != 0:
        raise Fail(
            f"`{' '.join(cp.args)}` exited {cp.returncode}; stdout={cp.stdout!r} stderr={cp.stderr!r}"
        )
    return cp


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def free_port(kind):
    """A port the kernel just handed out on 127.0.0.1 (UDP or TCP) and that is free again."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def udp_port():
    return free_port(socket.SOCK_DGRAM)


def tcp_port():
    return free_port(socket.SOCK_STREAM)


def unique_group():
    return f"239.255.{RNG.randint(1, 254)}.{RNG.randint(1, 254)}"


def start_dump(url, *extra, count=None):
    argv = [OSCGATE, "dump", url, *extra]
    if count is not None:
        argv += ["--count", str(count)]
    d = Proc(argv, "oscgate dump")
    if not d.wait_for("err", lambda line: "listening on" in line, timeout=STARTUP_S):
        raise Fail(f"dump never printed 'listening on' within {STARTUP_S} s\n{d.describe()}")
    return d


def expect_lines(proc, expected, timeout=LINE_S):
    """Waits for len(expected) stdout lines and asserts they are exactly `expected`."""
    proc.wait_for("out", lambda _line: True, count=len(expected), timeout=timeout)
    got = list(proc.out)
    if got[: len(expected)] != expected or len(got) != len(expected):
        raise Fail(
            "stdout differs\n"
            + "".join(f"  expected: {line}\n" for line in expected)
            + "".join(f"  actual:   {line}\n" for line in got)
            + proc.describe()
        )


def expect_clean_exit(proc, timeout=LINE_S):
    """A `dump --count N` that saw its N packets exits 0 with no `error:` line."""
    rc = proc.wait_exit(timeout)
    if rc is None:
        raise Fail(f"dump --count did not exit within {timeout} s after its packets\n{proc.describe()}")
    if rc != 0:
        raise Fail(f"dump exited {rc}, expected 0\n{proc.describe()}")
    errors = [line for line in proc.err if line.startswith("error:")]
    if errors:
        raise Fail(f"unexpected error lines: {errors!r}\n{proc.describe()}")


def msg(address, *typed):
    """Builds a python-osc message from (value, type) pairs."""
    b = OscMessageBuilder(address)
    for value, tag in typed:
        b.add_arg(value, tag)
    return b.build()


def send_and_wait(proc, send, n_lines):
    """Calls send() then waits until stdout has n_lines lines (keeps multi-sender order fixed)."""
    send()
    if not proc.wait_for("out", lambda _line: True, count=n_lines, timeout=LINE_S):
        raise Fail(f"no output line {n_lines} within {LINE_S} s after sending\n{proc.describe()}")


def wait_udp_bound(port, timeout=STARTUP_S):
    """Polls /proc/net/udp{,6} until some socket is bound to `port` (for tools that print nothing)."""
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(path) as f:
                    for row in f.readlines()[1:]:
                        fields = row.split()
                        if len(fields) > 1 and (fields[1] + " ").endswith(needle):
                            return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def mcast_sender():
    """A UDP socket whose multicast leaves through loopback only and never leaves the host."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return s


# --------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------


def scenario_a():
    """python-osc SimpleUDPClient/OscMessageBuilder -> oscgate dump (UDP)."""
    port = udp_port()
    d = start_dump(f"osc.udp://{LOOPBACK}:{port}", count=4)
    client = SimpleUDPClient(LOOPBACK, port)
    client.send(
        msg("/interop/a", (42, "i"), (2.5, "f"), ("hello world", "s"), (b"\x01\x02\xff", "b"))
    )
    # Types inferred by python-osc itself, including a 64-bit int and the argument-less tags.
    client.send_message(
        "/interop/a2", [-7, -0.25, 'q"t\\b\n\t', b"\x00", 5000000000, True, False, None]
    )
    client.send(
        msg("/interop/a3", (0.1, "d"), ((0x90, 0x3C, 0x7F, 0x00), "m"), (0x11223344, "r"), (1.0, "f"))
    )
    client.send(msg("/interop/a4", ([1, ["x"]], ["i", ["s"]])))
    expect_lines(
        d,
        [
            '/interop/a ,ifsb 42 2.5 "hello world" <0102ff>',
            '/interop/a2 ,ifsbhTFN -7 -0.25 "q\\"t\\\\b\\n\\t" <00> 5000000000 true false nil',
            "/interop/a3 ,dmrf 0.1 midi:903c7f00 #11223344 1.0",
            '/interop/a4 ,[i[s]] [ 1 [ "x" ] ]',
        ],
    )
    expect_clean_exit(d)


def scenario_b():
    """python-osc OscBundleBuilder (immediate, nested, timed) -> oscgate dump."""
    port = udp_port()
    d = start_dump(f"osc.udp://{LOOPBACK}:{port}", count=2)
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(msg("/b/nested", (0.5, "f")))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(msg("/b/one", (1, "i")))
    outer.add_content(msg("/b/two", ("two", "s")))
    outer.add_content(inner.build())
    # 1700000000.5 s after the Unix epoch = NTP 0xe8fe6f80 seconds + 0x80000000 fraction.
    timed = OscBundleBuilder(1700000000.5)
    timed.add_content(msg("/b/timed", (3, "i")))
    client = SimpleUDPClient(LOOPBACK, port)
    client.send(outer.build())
    client.send(timed.build())
    expect_lines(
        d,
        [
            "#bundle immediate",
            "  /b/one ,i 1",
            '  /b/two ,s "two"',
            "  #bundle immediate",
            "    /b/nested ,f 0.5",
            "#bundle e8fe6f80.80000000",
            "  /b/timed ,i 3",
        ],
    )
    expect_clean_exit(d)


def scenario_c():
    """liblo oscsend (every type it supports; it has no blob) -> oscgate dump (UDP)."""
    port = udp_port()
    d = start_dump(f"osc.udp://{LOOPBACK}:{port}", count=2)
    url = f"osc.udp://{LOOPBACK}:{port}"
    run_ok(["oscsend", url, "/liblo/c", "ifs", "1", "2.5", "hi"])
    run_ok(
        ["oscsend", url, "/liblo/all", "ihfdsScmTFNI", "-3", "-5000000000", "0.125", "3.5",
         "a b", "sym", "x", "903c7f00"]
    )
    expect_lines(
        d,
        [
            '/liblo/c ,ifs 1 2.5 "hi"',
            "/liblo/all ,ihfdsScmTFNI -3 -5000000000 0.125 3.5 \"a b\" 'sym' 'x' midi:903c7f00"
            " true false nil inf",
        ],
    )
    expect_clean_exit(d)


def scenario_d():
    """Multicast on loopback: python-osc message and oscgate send -> oscgate dump on a group."""
    group = unique_group()
    port = udp_port()
    d = start_dump(f"osc.udp://{group}:{port}", "--interface", LOOPBACK, count=2)
    s = mcast_sender()
    try:
        s.sendto(msg("/mc/py", (7, "i"), (0.5, "f"), ("group", "s")).dgram, (group, port))
    finally:
        s.close()
    d.wait_for("out", lambda _line: True, count=1)
    run_ok(
        [OSCGATE, "send", f"osc.udp://{group}:{port}", "/mc/oscgate", ",is", "8", "sent",
         "--interface", LOOPBACK, "--ttl", "0"]
    )
    expect_lines(d, ['/mc/py ,ifs 7 0.5 "group"', '/mc/oscgate ,is 8 "sent"'])
    expect_clean_exit(d)


def scenario_d_liblo():
    """liblo oscsend -> oscgate dump on a multicast group, inside a private network namespace.

    oscsend has no way to pick the multicast interface (no IP_MULTICAST_IF; the liblo URL has no
    interface part), so on the host it would follow the default route out of a real interface.
    In a fresh network namespace the only interface is lo, with 224.0.0.0/4 routed to it, so the
    datagram cannot leave the machine. Skipped where unprivileged (unshare -n fails).
    """
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip("cannot create a network namespace here (unshare -n failed)")
    cp = run(
        ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__), "--oscgate", OSCGATE,
         "--netns-liblo-mcast"],
        timeout=15,
    )
    try:
        result = json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail(f"netns helper gave no result (rc {cp.returncode}): {cp.stdout!r} {cp.stderr!r}")
    if not result.get("ok"):
        raise Fail("(in netns) " + result.get("error", "unknown"))


def netns_liblo_mcast():
    """Runs inside `unshare -n`: sets up lo, then the liblo multicast check; prints JSON."""
    try:
        run_ok(["ip", "link", "set", "lo", "up"])
        run_ok(["ip", "route", "add", "224.0.0.0/4", "dev", "lo", "src", LOOPBACK])
        group = unique_group()
        port = udp_port()
        d = start_dump(f"osc.udp://{group}:{port}", "--interface", LOOPBACK, count=1)
        run_ok(["oscsend", f"osc.udp://{group}:{port}", "/mc/liblo", "is", "9", "liblo"])
        expect_lines(d, ['/mc/liblo ,is 9 "liblo"'])
        expect_clean_exit(d)
        print(json.dumps({"ok": True}))
    except Exception as e:  # reported to the outer run as a failure
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    finally:
        kill_all()


def scenario_e():
    """oscgate send (typed, inferred, bundled, repeated) -> python-osc BlockingOSCUDPServer."""
    got = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: got.append((address, list(args))))
    server = BlockingOSCUDPServer((LOOPBACK, 0), dispatcher)
    server.timeout = 0.2
    port = server.server_address[1]
    url = f"osc.udp://{LOOPBACK}:{port}"

    def receive(n):
        deadline = time.monotonic() + LINE_S
        while len(got) < n and time.monotonic() < deadline:
            server.handle_request()

    cases = [
        (
            [url, "/e/typed", ",ifsbhdTFN", "1", "2.5", "hi", "010203", "-5000000000", "0.125"],
            ("/e/typed", [1, 2.5, "hi", b"\x01\x02\x03", -5000000000, 0.125, True, False, None]),
            [int, float, str, bytes, int, float, bool, bool, type(None)],
        ),
        (
            [url, "/e/inferred", "3", "-1.5", "true", "false", "nil", "word"],
            ("/e/inferred", [3, -1.5, True, False, None, "word"]),
            [int, float, bool, bool, type(None), str],
        ),
        (
            [url, "/e/bundled", ",i", "5", "--bundle", "immediate"],
            ("/e/bundled", [5]),
            [int],
        ),
    ]
    try:
        for argv, want, types in cases:
            got.clear()
            run_ok([OSCGATE, "send", *argv])
            receive(1)
            if len(got) != 1 or got[0] != want:
                raise Fail(f"oscgate send {' '.join(argv)}\n  expected: {want!r}\n  actual:   {got!r}")
            actual_types = [type(v) for v in got[0][1]]
            if actual_types != types:
                raise Fail(
                    f"oscgate send {' '.join(argv)}: Python types differ\n"
                    f"  expected: {[t.__name__ for t in types]}\n"
                    f"  actual:   {[t.__name__ for t in actual_types]}"
                )
        got.clear()
        run_ok([OSCGATE, "send", url, "/e/rep", ",s", "r", "--repeat", "3"])
        receive(3)
        time.sleep(0.1)
        server.timeout = 0.05
        server.handle_request()  # a fourth datagram would show up here
        if got != [("/e/rep", ["r"])] * 3:
            raise Fail(f"--repeat 3: expected 3 x ('/e/rep', ['r']), got {got!r}")
    finally:
        server.server_close()


ODUMP_STAMP = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8} ")


def scenario_f():
    """oscgate send -> liblo oscdump (-L: line-buffered) prints the right types and values."""
    port = udp_port()
    od = Proc(["oscdump", "-L", str(port)], "oscdump")
    if not wait_udp_bound(port):
        raise Fail(f"oscdump did not bind UDP {port}\n{od.describe()}")
    url = f"osc.udp://{LOOPBACK}:{port}"
    sends = [
        [url, "/f/x", ",ifsbhdTFNI", "1", "2.5", "hi", "010203", "-5000000000", "0.125"],
        [url, "/f/inferred", "7", "0.5", "text", "true", "inf"],
    ]
    # oscdump 0.31 prints `<timetag> <path> <types> <args>`; floats with %f, blobs as
    # `[Nb 0x..]`, T/F as #T/#F, N as Nil, I as Infinitum.
    expected = [
        '/f/x ifsbhdTFNI 1 2.500000 "hi" [3b 0x1 0x2 0x3] -5000000000 0.125000 #T #F Nil Infinitum',
        '/f/inferred ifsTI 7 0.500000 "text" #T Infinitum',
    ]
    for i, argv in enumerate(sends):
        run_ok([OSCGATE, "send", *argv])
        if not od.wait_for("out", lambda _line: True, count=i + 1):
            raise Fail(f"oscdump printed nothing for oscgate send {' '.join(argv)}\n{od.describe()}")
    got = [ODUMP_STAMP.sub("", line) for line in od.out]
    if got != expected:
        raise Fail(
            "oscdump output differs\n"
            + "".join(f"  expected: {line}\n" for line in expected)
            + "".join(f"  actual:   {line}\n" for line in got)
            + od.describe()
        )
    bad = [line for line in od.err if line.strip()]
    if bad:
        raise Fail(f"oscdump complained: {bad!r}")


def scenario_g():
    """TCP: oscgate send (len32, SLIP), python-osc SimpleTCPClient 1.0/1.1, liblo oscsend."""
    port = tcp_port()
    d = start_dump(f"osc.tcp://{LOOPBACK}:{port}", count=10)
    n = 0

    def step(send, lines):
        nonlocal n
        n += lines
        send_and_wait(d, send, n)

    step(lambda: run_ok([OSCGATE, "send", f"osc.tcp://{LOOPBACK}:{port}", "/g/len", ",is", "1", "len"]), 1)
    # c0 and db are SLIP's END and ESC bytes: they must arrive unescaped.
    step(lambda: run_ok([OSCGATE, "send", f"osc.tcp+slip://{LOOPBACK}:{port}", "/g/slip", ",b", "c0db00"]), 1)

    def py(mode, messages):
        def send():
            with SimpleTCPClient(LOOPBACK, port, mode=mode, timeout=3) as client:
                for m in messages:
                    client.send(m)
        return send

    step(py("1.0", [msg("/g/py10", (1, "i")), msg("/g/py10", ("two", "s"))]), 2)
    step(py("1.1", [msg("/g/py11", (b"\xc0\xdb\xdc\xdd", "b")), msg("/g/py11", (1.0, "f"))]), 2)
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(msg("/g/inbundle", (4, "i")))
    step(py("1.1", [bundle.build()]), 2)
    # The rest of the type set, a timed bundle and --repeat over one len32 connection.
    step(
        lambda: run_ok(
            [OSCGATE, "send", f"osc.tcp://{LOOPBACK}:{port}", "/g/types", ",Scrmt[if]", "sym", "x",
             "ff000080", "903c7f00", "e8fe6f80.80000000", "1", "0.5", "--bundle",
             "e8fe6f80.80000000", "--repeat", "2"]
        ),
        4,
    )
    expect_lines(
        d,
        [
            '/g/len ,is 1 "len"',
            "/g/slip ,b <c0db00>",
            "/g/py10 ,i 1",
            '/g/py10 ,s "two"',
            "/g/py11 ,b <c0dbdcdd>",
            "/g/py11 ,f 1.0",
            "#bundle immediate",
            "  /g/inbundle ,i 4",
            "#bundle e8fe6f80.80000000",
            "  /g/types ,Scrmt[if] 'sym' 'x' #ff000080 midi:903c7f00 e8fe6f80.80000000 [ 1 0.5 ]",
            "#bundle e8fe6f80.80000000",
            "  /g/types ,Scrmt[if] 'sym' 'x' #ff000080 midi:903c7f00 e8fe6f80.80000000 [ 1 0.5 ]",
        ],
    )
    # 12 lines from 9 packets so far; liblo (one connection per message, len32) sends the 10th.
    run_ok(["oscsend", f"osc.tcp://{LOOPBACK}:{port}", "/g/liblo", "i", "5"])
    d.wait_for("out", lambda _line: True, count=13)
    expect_lines(
        d,
        [
            '/g/len ,is 1 "len"',
            "/g/slip ,b <c0db00>",
            "/g/py10 ,i 1",
            '/g/py10 ,s "two"',
            "/g/py11 ,b <c0dbdcdd>",
            "/g/py11 ,f 1.0",
            "#bundle immediate",
            "  /g/inbundle ,i 4",
            "#bundle e8fe6f80.80000000",
            "  /g/types ,Scrmt[if] 'sym' 'x' #ff000080 midi:903c7f00 e8fe6f80.80000000 [ 1 0.5 ]",
            "#bundle e8fe6f80.80000000",
            "  /g/types ,Scrmt[if] 'sym' 'x' #ff000080 midi:903c7f00 e8fe6f80.80000000 [ 1 0.5 ]",
            "/g/liblo ,i 5",
        ],
    )
    expect_clean_exit(d)

    # A dump forced to SLIP with osc.tcp+slip://.
    port2 = tcp_port()
    d2 = start_dump(f"osc.tcp+slip://{LOOPBACK}:{port2}", count=2)
    send_and_wait(
        d2,
        lambda: run_ok([OSCGATE, "send", f"osc.tcp+slip://{LOOPBACK}:{port2}", "/g2/slip", "1"]),
        1,
    )
    with SimpleTCPClient(LOOPBACK, port2, mode="1.1", timeout=3) as client:
        client.send(msg("/g2/py11", ("s", "s")))
    expect_lines(d2, ["/g2/slip ,i 1", '/g2/py11 ,s "s"'])
    expect_clean_exit(d2)


def scenario_h():
    """Five malformed datagrams -> five `error:` lines; dump keeps going and prints valid ones."""
    port = udp_port()
    d = start_dump(f"osc.udp://{LOOPBACK}:{port}")
    noise = random.Random(20240501)
    garbage = [
        # random bytes, not starting with '/' or '#', length not a multiple of 4
        b"\xa7" + bytes(noise.randrange(256) for _ in range(36)),
        # a message cut short: the type tags promise three arguments, the data holds one
        msg("/trunc", (1, "i"), (2, "i"), ("three", "s")).dgram[:20],
        # an unknown type tag
        b"/bad\x00\x00\x00\x00,iQ\x00\x00\x00\x00\x01\x00\x00\x00\x02",
        # non-NUL padding after the address
        b"/pad\x00\x01\x02\x03,i\x00\x00\x00\x00\x00\x01",
        # a bundle whose element claims ~2 GiB
        b"#bundle\x00\x00\x00\x00\x00\x00\x00\x00\x01\x7f\xff\xff\xf0/x\x00\x00,\x00\x00\x00",
    ]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for g in garbage:
            s.sendto(g, (LOOPBACK, port))
        s.sendto(msg("/ok", (1, "i")).dgram, (LOOPBACK, port))
        if not d.wait_for("out", lambda _line: True, count=1):
            raise Fail(f"no line for the valid message after the garbage\n{d.describe()}")
        d.wait_for("err", lambda line: line.startswith("error:"), count=6, timeout=0.5)
        errors = [line for line in d.err if line.startswith("error:")]
        if len(errors) != 5:
            raise Fail(f"expected exactly 5 error: lines, got {len(errors)}\n{d.describe()}")
        if not d.alive():
            raise Fail(f"dump exited after the garbage\n{d.describe()}")
        s.sendto(msg("/ok", ("still", "s")).dgram, (LOOPBACK, port))
        expect_lines(d, ["/ok ,i 1", '/ok ,s "still"'])
        if not d.alive():
            raise Fail(f"dump exited\n{d.describe()}")
    finally:
        s.close()
        d.kill()


SCENARIOS = [
    ("a", "python-osc UDP message -> dump", scenario_a),
    ("b", "python-osc bundles -> dump", scenario_b),
    ("c", "liblo oscsend -> dump", scenario_c),
    ("d", "multicast python-osc + oscgate send -> dump", scenario_d),
    ("d-liblo", "multicast liblo oscsend -> dump (netns)", scenario_d_liblo),
    ("e", "oscgate send -> python-osc server", scenario_e),
    ("f", "oscgate send -> liblo oscdump", scenario_f),
    ("g", "TCP len32/SLIP senders -> dump", scenario_g),
    ("h", "malformed datagrams -> dump errors", scenario_h),
]


def run_per_driver(scenarios, drivers, only, oscgate, budget_s, hard_stop_s, cleanup):
    """Runs every (scenario, driver) pair of `scenarios` (id, title, fn(driver)) that `only`
    selects (ids like `m1` or `m1/uring`; None = all), within `budget_s`, with a SIGALRM hard
    stop; prints one PASS/FAIL/SKIP line each and `N passed, M failed`; calls `cleanup` after
    each. A Skip is a failure when OSCGATE_REQUIRE_ROOT_TESTS=1. Returns the exit status."""
    if not (os.path.isfile(oscgate) and os.access(oscgate, os.X_OK)):
        print(f"FAIL setup: no executable oscgate at {oscgate}")
        print("0 passed, 1 failed")
        return 1

    def on_alarm(_signum, _frame):
        raise TimeoutError(f"hard stop after {hard_stop_s} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(hard_stop_s)

    start = time.monotonic()
    passed = failed = 0
    try:
        for sid, title, fn in scenarios:
            for driver in drivers:
                if only and sid not in only and f"{sid}/{driver}" not in only:
                    continue
                label = f"{sid}/{driver}: {title}"
                t0 = time.monotonic()
                if t0 - start > budget_s:
                    print(f"FAIL {label} (not run: {budget_s:.0f} s budget used up)", flush=True)
                    failed += 1
                    continue
                try:
                    fn(driver)
                except Skip as e:
                    if os.environ.get("OSCGATE_REQUIRE_ROOT_TESTS") == "1":
                        failed += 1
                        print(f"FAIL {label} (skipped, but OSCGATE_REQUIRE_ROOT_TESTS=1: {e})", flush=True)
                    else:
                        print(f"SKIP {label} ({e})", flush=True)
                except Fail as e:
                    failed += 1
                    print(f"FAIL {label}\n{e}", flush=True)
                except Exception:
                    failed += 1
                    print(f"FAIL {label}\n{traceback.format_exc()}", flush=True)
                else:
                    passed += 1
                    print(f"PASS {label} ({time.monotonic() - t0:.1f} s)", flush=True)
                finally:
                    cleanup()
    finally:
        signal.alarm(0)
        cleanup()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def main():
    global OSCGATE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", required=True, help="path to the oscgate binary")
    ap.add_argument("--only", action="append", help="run only these scenario ids (repeatable)")
    ap.add_argument("--netns-liblo-mcast", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    OSCGATE = os.path.abspath(args.oscgate)

    def on_signal(signum, _frame):
        kill_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.netns_liblo_mcast:
        netns_liblo_mcast()
        return 0

    if not (os.path.isfile(OSCGATE) and os.access(OSCGATE, os.X_OK)):
        print(f"FAIL setup: no executable oscgate at {OSCGATE}")
        print("0 passed, 1 failed")
        return 1

    def on_alarm(_signum, _frame):
        raise TimeoutError(f"hard stop after {HARD_STOP_S} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HARD_STOP_S)

    start = time.monotonic()
    passed = failed = 0
    try:
        for sid, title, fn in SCENARIOS:
            if args.only and sid not in args.only:
                continue
            label = f"{sid}: {title}"
            t0 = time.monotonic()
            if t0 - start > BUDGET_S:
                print(f"FAIL {label} (not run: {BUDGET_S:.0f} s budget used up)", flush=True)
                failed += 1
                continue
            try:
                fn()
            except Skip as e:
                if os.environ.get("OSCGATE_REQUIRE_ROOT_TESTS") == "1":
                    failed += 1
                    print(f"FAIL {label} (skipped, but OSCGATE_REQUIRE_ROOT_TESTS=1: {e})", flush=True)
                else:
                    print(f"SKIP {label} ({e})", flush=True)
            except Fail as e:
                failed += 1
                print(f"FAIL {label}\n{e}", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {label}\n{traceback.format_exc()}", flush=True)
            else:
                passed += 1
                print(f"PASS {label} ({time.monotonic() - t0:.1f} s)", flush=True)
            finally:
                kill_all()
    finally:
        signal.alarm(0)
        kill_all()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
