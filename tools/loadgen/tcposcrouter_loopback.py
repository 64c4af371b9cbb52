#!/usr/bin/env python3
"""Runs the Python tcposcrouter package (0.2.0) on loopback only, for perf_router.py.

The package's own entry point (`tcposcrouter`, i.e. `tcposcrouter.__main__.run_server`)
always listens on 0.0.0.0. This launcher does what that function does - the same handlers
(`tcposcrouter.router.handle_new_conn(1.0)` for the length-prefixed port,
`handle_new_conn(1.1)` for the SLIP port), the same logging set-up (INFO and above to
`tcposcrouter.log` in --log-dir, WARNING and above to stderr) - but binds the address given
with --host, which must be in 127.0.0.0/8. Ports may be 0 (the kernel picks); once both
listen it prints one line on stdout:

    tcposcrouter: listening len32=127.0.0.1:PORT slip=127.0.0.1:PORT

Run it with the Python of the environment the package is installed in:

    .venv-tcposcrouter/bin/python tcposcrouter_loopback.py --port 0 --slip-port 0 --log-dir DIR

`--log-level warning` drops the package's per-message INFO lines from the file; the default
(info) is what the package's own command does.
"""

import argparse
import asyncio
import ipaddress
import logging
import logging.handlers
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    ap.add_argument("--port", type=int, default=55555, help="length-prefixed (OSC 1.0) port")
    ap.add_argument("--slip-port", type=int, default=55556, help="SLIP (OSC 1.1) port")
    ap.add_argument("--log-dir", default=".", help="where tcposcrouter.log goes")
    ap.add_argument("--log-level", choices=["info", "warning"], default="info")
    a = ap.parse_args()
    try:
        loopback = ipaddress.IPv4Address(a.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        ap.error(f"--host {a.host}: not an IPv4 loopback address (127.0.0.0/8)")
    return a


async def serve(a):
    # Imported here so that a missing package gives the message below, not a traceback.
    from tcposcrouter.router import handle_new_conn

    file_handler = logging.handlers.RotatingFileHandler(
        os.path.join(a.log_dir, "tcposcrouter.log"), mode="a", maxBytes=1024**4, backupCount=10
    )
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    logging.basicConfig(
        format="[%(asctime)s] %(message)s",
        level=logging.INFO if a.log_level == "info" else logging.WARNING,
        handlers=[file_handler, to_stderr],
    )
    len32 = await asyncio.start_server(handle_new_conn(1.0), a.host, a.port)
    slip = await asyncio.start_server(handle_new_conn(1.1), a.host, a.slip_port)
    name = lambda s: "%s:%d" % s.sockets[0].getsockname()[:2]  # noqa: E731
    print(f"tcposcrouter: listening len32={name(len32)} slip={name(slip)}", flush=True)
    await asyncio.gather(len32.serve_forever(), slip.serve_forever())


def main():
    a = parse_args()
    try:
        import tcposcrouter.router  # noqa: F401
    except ImportError as e:
        sys.exit(f"tcposcrouter_loopback: cannot import the tcposcrouter package ({e}); "
                 "run this with the Python of the environment it is installed in")
    try:
        asyncio.run(serve(a))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.exit(f"tcposcrouter_loopback: cannot listen on {a.host}: {e}")


if __name__ == "__main__":
    main()
