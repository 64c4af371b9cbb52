#!/usr/bin/env python3
"""Interop scenarios for oscgate's HTTP edge in a real browser (`oscgate run`, `[http]`).

Runs `oscgate run` with a loopback-only [messenger] section and `[http] listen =
"127.0.0.1:0"` (router and OSChat off), opens its pages in Debian's Chromium, headless, driven
over the DevTools protocol on a pipe (headless_chromium.py), and lets a python-osc UDP patron
talk to the browser through the Messenger bus. Clicks and typing are real input events; what
is checked is what the page shows (text of its elements) and what the patron receives (bytes
and python-osc's decoding). Every scenario runs once per driver (`--driver mio`, then
`--driver uring`; uring is skipped with the reason when the kernel cannot run it). Prints one
PASS/FAIL/SKIP line per scenario and driver and a last line `N passed, M failed`; exits
non-zero on any failure (a SKIP counts as a failure when OSCGATE_REQUIRE_ROOT_TESTS=1).

It does not build oscgate, install anything (see setup.sh: Debian `chromium`), or send anything
outside 127.0.0.0/8 and multicast sent with IP_MULTICAST_IF 127.0.0.1 and TTL 0. Each browser
gets a fresh temporary profile, resolves no host name, uses no proxy, and is killed with its
whole process group at the end of its scenario, also on failure.

Run with the venv from setup.sh: `.venv/bin/python browser_scenarios.py --oscgate PATH`.
"""

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cli_scenarios as cli  # noqa: E402  (processes, ports, groups, run_per_driver)
import messenger_scenarios as ms  # noqa: E402  (python-osc patrons and their checks)
from cli_scenarios import LOOPBACK, Fail, Skip, msg  # noqa: E402
from headless_chromium import BrowserError, Chromium, find_chromium  # noqa: E402

BUDGET_S = 45.0  # whole run
HARD_STOP_S = 75  # SIGALRM if something still hangs
STARTUP_S = 5.0  # time for oscgate to print `oscgate: running`
PAGE_S = 5.0  # time for a page to load, connect, or show what it should
SETTLE_S = 4.0  # time for the live page to catch up with /api/status (events come each second)
QUIET_S = 0.3  # how long "nothing else arrives" is watched
TRAFFIC = 5  # datagrams the patron sends in b2
DRIVERS = ("mio", "uring")

URING_UNUSABLE = "io_uring is not usable here"
HTTP_LINE = re.compile(
    r"^oscgate: http on 127\.0\.0\.1:(\d+) "
    r"\(status /, /api/status, /metrics, websocket /gateway\), driver (\S+)$"
)
MESSENGER_LINE = re.compile(
    r"^oscgate: messenger on ([\d.]+):(\d+) \(udp\+tcp\), .*, driver (\S+)$"
)
# urllib must not send 127.0.0.1 requests to a proxy named in the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

OSCGATE = "oscgate"
TMP = None  # a TemporaryDirectory for configs and browser profiles
CLEANUP = []  # browsers of the running scenario
URING_SKIP = None  # the reason, once oscgate said uring cannot run here


def cleanup():
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except Exception:  # closing something already broken is not a finding
            pass
    ms.cleanup()  # python-osc patrons, then every process (oscgate) via cli.kill_all


# --------------------------------------------------------------------------------------
# oscgate with the HTTP edge, the browser
# --------------------------------------------------------------------------------------


class Edge:
    """`oscgate run --driver DRIVER`: Messenger on loopback and HTTP on a kernel-picked port."""

    _n = 0

    def __init__(self, driver):
        global URING_SKIP
        if driver == "uring" and URING_SKIP:
            raise Skip(URING_SKIP)
        self.driver = driver
        self.group = cli.unique_group()
        Edge._n += 1
        path = os.path.join(TMP, f"edge-{Edge._n}.toml")
        with open(path, "w") as f:
            # Keepalives every 20 s: none during a scenario, so the counters b2 compares move
            # only with the traffic it sends.
            f.write(
                "[engine]\nworkers = 2\n"
                "[messenger]\n"
                f'group = "{self.group}:{cli.udp_port()}"\n'
                f'interface = "{LOOPBACK}"\n'
                f'listen = "{LOOPBACK}:0"\n'
                "ttl = 0\nkeepalive_s = 20\ntimeout_s = 60\n"
                "[router]\nenabled = false\n[oschat]\nenabled = false\n"
                f'[http]\nlisten = "{LOOPBACK}:0"\n'
            )
        self.proc = cli.Proc(
            [OSCGATE, "run", "--config", path, "--driver", driver], f"oscgate run --driver {driver}"
        )
        if not self.proc.wait_for("out", "oscgate: running".__eq__, timeout=STARTUP_S):
            self.proc.wait_exit(1.0)
            unusable = [line for line in self.proc.err if URING_UNUSABLE in line]
            if driver == "uring" and unusable:
                URING_SKIP = unusable[0].strip()
                raise Skip(URING_SKIP)
            raise Fail(f"oscgate never printed 'oscgate: running'\n{self.proc.describe()}")
        http = [m for m in map(HTTP_LINE.match, self.proc.out) if m]
        messenger = [m for m in map(MESSENGER_LINE.match, self.proc.out) if m]
        if len(http) != 1 or len(messenger) != 1:
            raise Fail(
                "oscgate printed no single 'http on' and 'messenger on' line\n"
                + self.proc.describe()
            )
        if http[0].group(2) != driver or messenger[0].group(3) != driver:
            raise Fail(f"oscgate announced another driver than {driver}\n{self.proc.describe()}")
        self.base = f"http://{LOOPBACK}:{http[0].group(1)}"
        self.addr = (messenger[0].group(1), int(messenger[0].group(2)))

    def status(self):
        """GET /api/status, decoded."""
        try:
            with DIRECT.open(self.base + "/api/status", timeout=2.0) as r:
                return json.load(r)
        except (OSError, ValueError) as e:
            raise Fail(f"GET {self.base}/api/status: {e}\n{self.proc.describe()}") from e


class Ctx:
    """What a scenario started, for the failure message."""

    def __init__(self):
        self.edge = None
        self.browser = None
        self.page = None

    def describe(self):
        parts = []
        if self.page:
            parts.append(self.page.describe())
        if self.browser:
            parts.append(self.browser.log_tail())
        if self.edge:
            parts.append(self.edge.proc.describe())
        return "\n".join(parts)

    def start_browser(self):
        exe = find_chromium()
        if not exe:
            raise Fail(
                "no executable chromium ($CHROMIUM if set, else `chromium` on PATH); "
                "setup.sh installs Debian's `chromium`"
            )
        self.browser = Chromium(exe, TMP)
        CLEANUP.append(self.browser.close)
        return self.browser


def browser_scenario(fn):
    """fn(driver, ctx) with every failure (a Fail or the browser's) told with the page's
    console, the browser's log and oscgate's output."""

    def run(driver):
        ctx = Ctx()
        try:
            fn(driver, ctx)
        except (Fail, BrowserError) as e:
            raise Fail(f"{e}\n{ctx.describe()}") from e

    run.__doc__ = fn.__doc__
    return run


# --------------------------------------------------------------------------------------
# reading the pages
# --------------------------------------------------------------------------------------


def expect_text(page, element_id, expected):
    got = page.text(element_id)
    if got != expected:
        raise Fail(f"#{element_id} shows {got!r}, expected {expected!r}")


def demo_log(page):
    """The demo's #log as (class, text) pairs, without each line's leading local time."""
    return [
        tuple(x)
        for x in page.eval(
            """[...document.getElementById("log").children].map(
                   d => [d.className, d.textContent.slice(d.textContent.indexOf("  ") + 2)])"""
        )
    ]


def expect_log(page, expected):
    got = demo_log(page)
    if got != expected:
        raise Fail(
            "the demo's #log differs\n"
            + "".join(f"  expected: {line!r}\n" for line in expected)
            + "".join(f"  actual:   {line!r}\n" for line in got)
        )


def shown_number(text):
    """A figure of the live page (`num()`: toLocaleString of a number, `-` before any event)."""
    digits = re.sub(r"[,\u00a0\u202f ]", "", text or "")
    if not re.fullmatch(r"\d+", digits):
        raise Fail(f"the live page shows {text!r} where a whole number belongs")
    return int(digits)


def settle(page, edge, what, cond=lambda rx, fwd: True):
    """Waits until #rx_total and #fwd_total equal /api/status's received and forwarded (read
    in the same round) and `cond(rx, fwd)` holds; returns (rx, fwd)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        shown = page.eval(
            '["rx_total", "fwd_total"].map(id => document.getElementById(id).textContent)'
        )
        c = edge.status()["counters"]
        if "-" not in shown:
            rx, fwd = shown_number(shown[0]), shown_number(shown[1])
            if (rx, fwd) == (c["received"], c["forwarded"]) and cond(rx, fwd):
                return rx, fwd
        if time.monotonic() >= deadline:
            raise Fail(
                f"{what}: within {SETTLE_S} s the live page never showed received/forwarded equal "
                f"to /api/status; last shown {shown!r}, api {c['received']}/{c['forwarded']}"
            )
        time.sleep(0.1)


def expect_status(edge, pick, want, what, timeout=2.0):
    """Polls /api/status until pick(status) == want (the control thread republishes what it
    knows at most twice a second)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pick(edge.status())
        if got == want:
            return
        if time.monotonic() >= deadline:
            raise Fail(f"/api/status: {what} are {got!r}, expected {want!r}")
        time.sleep(0.1)


def type_tags(dgram):
    """The type tag string of an OSC message datagram."""
    end = dgram.index(b"\0")
    start = (end // 4 + 1) * 4
    return dgram[start : dgram.index(b"\0", start)].decode()


def expect_no_exceptions(page):
    thrown = page.exceptions()
    if thrown:
        raise Fail(f"the page threw {len(thrown)} uncaught exception(s): {thrown!r}")


# --------------------------------------------------------------------------------------
# scenarios (each takes the driver name and a Ctx)
# --------------------------------------------------------------------------------------


@browser_scenario
def scenario_demo(driver, ctx):
    """/demo in Chromium <-> a python-osc UDP patron over the Messenger bus."""
    edge = ctx.edge = Edge(driver)
    browser = ctx.start_browser()
    page = ctx.page = browser.open(edge.base + "/demo", timeout=PAGE_S)
    expect_text(page, "state", "closed")
    if page.eval('document.getElementById("bus").value') != "messenger":
        raise Fail("the demo's bus input does not hold 'messenger'")

    page.click("#connect")
    try:
        state = page.wait_for(
            '(t => /^session \\S+$/.test(t) && t)(document.getElementById("state").textContent)',
            PAGE_S,
            "#state to show `session N` after clicking connect",
        )
    except BrowserError as e:
        raise Fail(f"{e}\n  #state: {page.text('state')!r}\n  #log: {demo_log(page)!r}") from e
    session = state.split(" ", 1)[1]
    expect_text(page, "connect", "disconnect")
    st = edge.status()
    handshake = f"handshake: oscgate {st['version']}, protocol {st['protocol']}, buses messenger"
    expect_log(page, [("in", handshake), ("in", f"ready: session {session}")])
    # The session oscgate lists is this browser's, identified as the page does it.
    agent = page.eval("navigator.userAgent")
    want = [{"session": session, "bus": "messenger", "client_type": "web", "client_agent": agent}]
    expect_status(edge, lambda s: s["websocket"]["sessions"], want, "websocket sessions")

    patron = ms.UdpPatron("python-osc patron", edge)
    patron.join()

    # The page -> the patron, through the form, typed as a person would.
    page.type_into("#address", "/demo/hello")
    page.type_into("#args", "s:hi i:7")
    page.click('#send button[type="submit"]')
    ms.expect_data(patron, [("/demo/hello", ["hi", 7])])
    got = patron.data_raw()[0]
    if type_tags(got) != ",si":
        raise Fail(f"the patron got type tags {type_tags(got)!r}, expected ',si': {got!r}")
    ms.expect_raw(patron, [msg("/demo/hello", ("hi", "s"), (7, "i")).dgram])

    # The patron -> the page.
    patron.send(msg("/to/browser", ("x", "s"), (0.5, "f")))
    try:
        page.wait_for(
            """[...document.getElementById("log").children].some(d =>
                   d.className === "in" && d.textContent.endsWith("  /to/browser s:x f:0.5"))""",
            PAGE_S,
            "#log to show `/to/browser s:x f:0.5`",
        )
    except BrowserError as e:
        raise Fail(f"{e}\n  #log: {demo_log(page)!r}") from e
    ms.expect_quiet((patron, 1))
    # Exactly this: nothing came back to the page, nothing else arrived.
    expect_log(
        page,
        [
            ("in", handshake),
            ("in", f"ready: session {session}"),
            ("out", "/demo/hello s:hi i:7"),
            ("in", "/to/browser s:x f:0.5"),
        ],
    )
    expect_no_exceptions(page)


@browser_scenario
def scenario_live(driver, ctx):
    """/ in Chromium: live from server-sent events, driver, counters and the patron table."""
    edge = ctx.edge = Edge(driver)
    browser = ctx.start_browser()
    page = ctx.page = browser.open(edge.base + "/", timeout=PAGE_S)
    page.wait_for(
        'document.getElementById("state").textContent === "live"', PAGE_S, '#state to be "live"'
    )
    if page.eval('document.getElementById("state").className') != "live":
        raise Fail("#state says live without the `live` class")
    expect_text(page, "driver", driver)
    st = edge.status()
    expect_text(page, "version", f"{st['version']} (gateway protocol {st['protocol']})")
    expect_text(page, "ws_n", "0")
    page.wait_for(
        'document.getElementById("messenger").textContent === "none"',
        SETTLE_S,
        "the patron table to say `none` before any patron joined",
    )
    # Set once; a reload would lose it, so the figures below change in this same document.
    page.eval("window.oscgateInteropMark = 1")

    patron = ms.UdpPatron("python-osc patron", edge)
    patron.join()
    port = patron.server.server_address[1]
    header = ["endpoint", "uid", "admitted (s ago)", "idle (s)"]
    rows = page.wait_for(
        """(rows => rows.length > 1 && rows)([...document.querySelectorAll("#messenger tr")]
               .map(tr => [...tr.cells].map(c => c.textContent)))""",
        SETTLE_S,
        "the patron table to list a patron",
    )
    if rows[0] != header or len(rows) != 2:
        raise Fail(f"the patron table is {rows!r}; expected the header {header!r} and one row")
    endpoint, uid, admitted, idle = rows[1]
    if (endpoint, uid) != (f"udp {LOOPBACK}:{port}", patron.uid) or not (
        admitted.isdigit() and idle.isdigit()
    ):
        raise Fail(
            f"the patron row is {rows[1]!r}; expected ['udp {LOOPBACK}:{port}', '{patron.uid}', "
            "seconds, seconds]"
        )

    rx1, fwd1 = settle(page, edge, "before the traffic")
    for k in range(TRAFFIC):
        patron.send(msg("/b2/traffic", (k, "i")))
    rx2, fwd2 = settle(
        page,
        edge,
        f"after {TRAFFIC} datagrams",
        lambda rx, fwd: rx >= rx1 + TRAFFIC and fwd >= fwd1 + TRAFFIC,
    )
    if page.eval("window.oscgateInteropMark") != 1:
        raise Fail("the live page was reloaded; it should update itself in place")
    print(f"  b2/{driver}: #rx_total {rx1} -> {rx2}, #fwd_total {fwd1} -> {fwd2}", flush=True)
    expect_text(page, "state", "live")
    expect_no_exceptions(page)


SCENARIOS = [
    ("b1", "Chromium /demo <-> python-osc UDP patron via the WebSocket gateway", scenario_demo),
    ("b2", "Chromium / live page: SSE state, driver, counters, patron table", scenario_live),
]


def main():
    global OSCGATE, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", required=True, help="path to the oscgate binary")
    ap.add_argument(
        "--only", action="append", help="run only these scenario ids (repeatable; b1 or b1/uring)"
    )
    args = ap.parse_args()
    OSCGATE = os.path.abspath(args.oscgate)

    def on_signal(signum, _frame):
        cleanup()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="oscgate-browser-") as tmp:
        TMP = tmp
        return cli.run_per_driver(
            SCENARIOS, DRIVERS, args.only, OSCGATE, BUDGET_S, HARD_STOP_S, cleanup
        )


if __name__ == "__main__":
    sys.exit(main())
