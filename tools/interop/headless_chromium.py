"""Headless Chromium driven over the DevTools protocol on a pipe, standard library only.

Starts Debian's `chromium` with `--remote-debugging-pipe`: the browser reads protocol
messages (JSON, each ended by a NUL byte) from its fd 3 and writes replies and events to its
fd 4. No debugging port is opened and no WebSocket client is needed, so nothing here depends
on a package that could be missing offline, and nothing else on the machine can reach the
browser. The browser runs with a fresh temporary profile, in its own session (process group),
with every host name resolving to nothing and no proxy, so the only traffic it can make goes
to the IP literals the caller opens (the scenarios use 127.0.0.1 only). `close()` asks it to
quit, then kills the whole process group and removes the profile; it is safe to call twice
and on every path.

What it does not do: install Chromium (see setup.sh), take screenshots, or wait for network
idleness. A `Page` offers what the scenarios need: evaluate an expression, poll one until it
holds, click an element with real mouse events at its centre, type text into an input as
keyboard input, and report the JavaScript exceptions the page threw.
"""

import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time

START_S = 15.0  # the first reply (Browser.getVersion) must come within this
CALL_S = 5.0  # default time for one protocol command
POLL_S = 0.05  # interval between evaluations in Page.wait_for

# What every browser here runs with (see /work/shared/INTEROP.md for the base set).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--no-proxy-server",
    # No name resolves: anything the browser might try on its own fails before sending a byte.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1024,768",
    "--remote-debugging-pipe",
]


class BrowserError(Exception):
    """The browser did not start, died, answered with an error, or a wait ran out."""


def find_chromium():
    """$CHROMIUM, else `chromium` on PATH, else None."""
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium")
    return exe if exe and os.access(exe, os.X_OK) else None


class Chromium:
    """One headless browser with a fresh profile under `workdir`."""

    def __init__(self, exe, workdir, start_s=START_S):
        self.exe = exe
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
        self.log_path = self.profile + ".log"
        self.pid = None
        self.cond = threading.Condition()
        self.replies = {}
        self.events = []  # (sessionId or None, method, params) in arrival order
        self.eof = False
        self.next_id = 0
        self.closed = False
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        # Move the child's ends above 9 first, so that the dup2 onto 3 and 4 below cannot
        # overwrite one with the other whatever numbers os.pipe() returned.
        child_r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_r)
        os.close(from_w)
        argv = [exe, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        log_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            self.pid = os.posix_spawn(
                exe,
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, self.log_path, log_flags, 0o600),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                    (os.POSIX_SPAWN_DUP2, child_r, 3),
                    (os.POSIX_SPAWN_DUP2, child_w, 4),
                ],
                setsid=True,
            )
        except OSError as e:
            self.close()
            raise BrowserError(f"cannot start {exe}: {e}") from e
        finally:
            os.close(child_r)
            os.close(child_w)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            self.version = self.call("Browser.getVersion", timeout=start_s)
        except BrowserError as e:
            self.close()
            raise BrowserError(f"{exe} did not come up: {e}\n{self.log_tail()}") from e

    # -- protocol ------------------------------------------------------------------------

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.from_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    self.eof = True
                    self.cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                with self.cond:
                    if "id" in m:
                        self.replies[m["id"]] = m
                    else:
                        event = (m.get("sessionId"), m.get("method"), m.get("params", {}))
                        self.events.append(event)
                    self.cond.notify_all()

    def call(self, method, params=None, session=None, timeout=CALL_S):
        """Sends one command; returns its result or raises BrowserError."""
        with self.cond:
            if self.eof or self.closed:
                raise BrowserError(f"{method}: the browser is gone")
            self.next_id += 1
            mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        data = json.dumps(m).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self.to_w, data):]
        except OSError as e:
            raise BrowserError(f"{method}: cannot write to the browser: {e}") from e
        deadline = time.monotonic() + timeout
        with self.cond:
            while mid not in self.replies:
                left = deadline - time.monotonic()
                if self.eof:
                    raise BrowserError(f"{method}: the browser closed the pipe")
                if left <= 0:
                    raise BrowserError(f"{method}: no answer within {timeout} s")
                self.cond.wait(min(left, 0.1))
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def session_events(self, session, method=None):
        with self.cond:
            return [
                p
                for s, mt, p in self.events
                if s == session and (method is None or mt == method)
            ]

    # -- pages ---------------------------------------------------------------------------

    def open(self, url, timeout=CALL_S):
        """A new foreground tab that loaded `url` (document complete)."""
        return Page(self, url, timeout)

    # -- the end -------------------------------------------------------------------------

    def log_tail(self, n=12):
        """The last lines of the browser's own output, without the D-Bus complaints every
        container start produces and the launcher script's own shell noise."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [
                    line.rstrip("\n")
                    for line in f
                    if "dbus" not in line and not line.startswith(self.exe + ":")
                ]
        except OSError:
            return "  [chromium] (no log)"
        tail = "\n".join(f"  [chromium] {line}" for line in lines[-n:])
        return tail or "  [chromium] (empty log)"

    def close(self):
        """Browser.close, then SIGKILL to the process group; reaps it, removes the profile."""
        if self.closed:
            return
        if self.pid is not None and not self.eof:
            try:
                self.call("Browser.close", timeout=1.0)
            except BrowserError:
                pass
        self.closed = True
        if self.pid is not None:
            # Wait for the exit without reaping (WNOWAIT): the zombie keeps its pid, and so the
            # process group id, from being reused before the killpg below.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                        break
                except ChildProcessError:
                    break
                time.sleep(0.02)
            # Helpers (zygote, renderers, utilities) share the browser's process group.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        try:
            os.close(self.to_w)
        except OSError:
            pass
        # The reader sees end of file once no browser process holds the pipe; only then is its
        # fd closed, so that a reader still in os.read() can never pick up a later fd that
        # happens to get the same number.
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.join(2.0)
        if reader is None or not reader.is_alive():
            try:
                os.close(self.from_r)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab attached in flat mode: commands carry its session id."""

    def __init__(self, browser, url, timeout):
        self.b = browser
        self.url = url
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Runtime", "Page", "Log"):
            self.cmd(f"{domain}.enable")
        self.cmd("Page.bringToFront")
        nav = self.cmd("Page.navigate", {"url": url}, timeout=timeout)
        if nav.get("errorText"):
            raise BrowserError(f"navigating to {url}: {nav['errorText']}")
        self.wait_for(
            f"document.readyState === 'complete' && location.href === {json.dumps(url)}",
            timeout,
            f"{url} to load",
        )

    def cmd(self, method, params=None, timeout=CALL_S):
        return self.b.call(method, params, session=self.session, timeout=timeout)

    def eval(self, expression, timeout=CALL_S):
        """The value of `expression` (JSON-able) in the page; raises on a page exception."""
        r = self.cmd(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise BrowserError(f"evaluating {expression!r}: {text}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout, what):
        """Polls `expression` until it is truthy; returns that value. On timeout raises with
        the last value (or error) seen, so a failure shows what the page had instead."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.eval(expression)
                if last:
                    return last
            except BrowserError as e:  # e.g. the context is being replaced by a navigation
                last = e
            if time.monotonic() >= deadline:
                raise BrowserError(f"waited {timeout} s for {what}; last value: {last!r}")
            time.sleep(POLL_S)

    def text(self, element_id):
        """textContent of the element with that id (None if there is none)."""
        return self.eval(
            f"(e => e && e.textContent)(document.getElementById({json.dumps(element_id)}))"
        )

    def click(self, selector):
        """A left click with real mouse events at the centre of `selector`'s element."""
        box = self.eval(
            f"""(() => {{
                const e = document.querySelector({json.dumps(selector)});
                if (!e) return null;
                e.scrollIntoView({{block: "center", inline: "center"}});
                const r = e.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height];
            }})()"""
        )
        if not box or box[2] <= 0 or box[3] <= 0:
            raise BrowserError(f"no visible element {selector!r} to click (box {box!r})")
        x, y = box[0], box[1]
        self.cmd("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.cmd(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1},
            )

    def type_into(self, selector, text):
        """Clicks the input, selects what it holds and types `text` over it."""
        self.click(selector)
        focused = self.eval(
            f"""(() => {{
                const e = document.querySelector({json.dumps(selector)});
                e.select();
                return document.activeElement === e;
            }})()"""
        )
        if not focused:
            raise BrowserError(f"clicking {selector!r} did not focus it")
        self.cmd("Input.insertText", {"text": text})

    def exceptions(self):
        """Uncaught JavaScript exceptions the page threw, as text."""
        out = []
        for p in self.b.session_events(self.session, "Runtime.exceptionThrown"):
            d = p.get("exceptionDetails", {})
            out.append(d.get("exception", {}).get("description") or d.get("text", "?"))
        return out

    def describe(self):
        """The page's console and log output and exceptions, for a failure message."""
        lines = []
        for p in self.b.session_events(self.session, "Log.entryAdded"):
            e = p.get("entry", {})
            line = f"  [page log] {e.get('level')}: {e.get('text')} {e.get('url', '')}"
            lines.append(line.rstrip())
        for p in self.b.session_events(self.session, "Runtime.consoleAPICalled"):
            args = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            lines.append(f"  [page console] {p.get('type')}: {args}")
        lines += [f"  [page exception] {x}" for x in self.exceptions()]
        return "\n".join(lines) or "  [page] no console output"
