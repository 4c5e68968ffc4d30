#!/usr/bin/env python3
"""/healthz during connection floods, before vs after, in the same run (issue #15).

    tests/bench/flood_healthz.py BEFORE_BIN AFTER_BIN [--port 18650] [--rounds 2]
                                 [--idle 20000] [--slow 400] [--samples 20] [--small-cap 200]

For each round and each binary (interleaved: before, after, before, after, ...), on a
fresh daemon with its own temp data folder:
  idle: opens IDLE connections from 127.0.0.1 that send nothing, then times /healthz
        from a second address (127.0.0.2) and from the flood's own address (127.0.0.1);
  full: the same flood split over 127.0.0.1 and 127.0.0.3 against a daemon whose
        `server.max_connections` is SMALL_CAP (below the two addresses' per-address
        caps together, so the global cap is full), /healthz from 127.0.0.2;
  sustained: as full, but every flood connection the daemon closes is opened again at
        once (the flood never expires by the header timeout);
  slow: opens SLOW connections that announce a 7 MB identify body without a token and
        keep sending it in 64 KB pieces, timing /healthz from 127.0.0.2 meanwhile;
then closes the flood and reads the daemon's fds, VmRSS and VmHWM (/proc/PID/status).
The idle connections are held by helper processes of 10,000 each (a process's fd limit
may be lower than the flood).
The LiteRT library comes from FACEGATE_LITERT_LIB (or the binary's own search); run
from the repository root. Latencies are in ms; "refused" = no HTTP answer.
"""
import argparse, os, resource, socket, statistics, subprocess, sys, tempfile, time

from benchlib import Daemon, exchange, http_status

SECOND = "127.0.0.2"


def healthz(source, port, timeout=5.0):
    """(HTTP status or 0, ms) of one GET /healthz on a new connection from `source`."""
    t = time.monotonic()
    answer = exchange(source, port,
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout)
    return http_status(answer), (time.monotonic() - t) * 1000


def summary(samples):
    ok = [ms for code, ms in samples if code == 200]
    refused = len(samples) - len(ok)
    if not ok:
        return f"0/{len(samples)} answered"
    return (f"{len(ok)}/{len(samples)} answered, median {statistics.median(ok):.1f} ms, "
            f"max {max(ok):.1f} ms" + (f", {refused} refused" if refused else ""))


def after_close(d):
    time.sleep(3)
    return f"fds {d.fds()}, VmRSS {d.status('VmRSS')} kB, VmHWM {d.status('VmHWM')} kB"


HOLDER = r"""
import selectors, socket, sys, resource, threading
source, port, count, sustain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
def open_one():
    s = socket.socket()
    s.setblocking(False)
    s.bind((source, 0))
    s.connect_ex(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_READ)
for _ in range(count):
    open_one()
print(count, flush=True)
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
reopened = 0
while not done.is_set():
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            continue
        sel.unregister(s)
        s.close()
        if sustain:
            open_one()
            reopened += 1
print(reopened, flush=True)
"""


class IdleFlood:
    """`count` idle connections from `sources` (split evenly), held by helper processes
    of at most 10,000 each until `close`."""

    def __init__(self, port, count, sources, sustain=False):
        per_source = count // len(sources)
        self.procs = []
        for source in sources:
            left = per_source
            while left > 0:
                n = min(left, 10000)
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", HOLDER, source, str(port), str(n),
                     "1" if sustain else "0"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
                left -= n
        self.opened = sum(int(p.stdout.readline() or 0) for p in self.procs)

    def close(self):
        """Closes the flood; returns how many connections were opened again."""
        for p in self.procs:
            p.stdin.close()
        reopened = sum(int(p.stdout.readline() or 0) for p in self.procs)
        for p in self.procs:
            p.wait()
        return reopened


def idle_flood(d, count, samples):
    flood = IdleFlood(d.port, count, ["127.0.0.1"])
    time.sleep(2)
    second = [healthz(SECOND, d.port) for _ in range(samples)]
    same = [healthz("127.0.0.1", d.port) for _ in range(samples)]
    during = f"daemon fds {d.fds()}, VmRSS {d.status('VmRSS')} kB"
    flood.close()
    n = flood.opened
    return [(f"{n} idle from 127.0.0.1: /healthz from {SECOND}", summary(second)),
            (f"{n} idle from 127.0.0.1: /healthz from 127.0.0.1 (the flood's)", summary(same)),
            (f"{n} idle: while open", during),
            (f"{n} idle: after close", after_close(d))]


def full_cap_flood(d, count, samples, cap, sustain=False):
    flood = IdleFlood(d.port, count, ["127.0.0.1", "127.0.0.3"], sustain)
    time.sleep(2)
    second = [healthz(SECOND, d.port) for _ in range(samples)]
    during = f"daemon fds {d.fds()}, VmRSS {d.status('VmRSS')} kB"
    reopened = flood.close()
    n = flood.opened
    kind = f"sustained (re-opened {reopened})" if sustain else "once"
    return [(f"max_connections={cap}, {n} idle from .1 and .3, {kind}: /healthz from {SECOND}",
             summary(second)),
            (f"max_connections={cap}, {kind}: while open", during),
            (f"max_connections={cap}, {kind}: after close", after_close(d))]


def slow_bodies(d, count, samples):
    head = (b"POST /face-api/facegallery/identify-face HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 7340032\r\n\r\n")
    slow = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", d.port))
            s.sendall(head)
            s.setblocking(False)
            slow.append(s)
        except OSError:
            s.close()
    piece = b"a" * 65536
    lat = []
    sent = 0
    deadline = time.monotonic() + 40
    # Keep every connection sending while /healthz is timed between rounds of pieces.
    while sent < 7340031 - len(piece) and time.monotonic() < deadline:
        alive = 0
        for s in slow:
            try:
                s.send(piece)
                alive += 1
            except OSError:
                pass
        sent += len(piece)
        if len(lat) < samples and sent % (len(piece) * 4) == 0:
            lat.append(healthz(SECOND, d.port))
        if alive == 0:
            break
    while len(lat) < samples:
        lat.append(healthz(SECOND, d.port))
    hwm_during = d.status("VmHWM")
    for s in slow:
        s.close()
    return [(f"{count} slow 7 MB bodies: /healthz from {SECOND}", summary(lat)),
            (f"{count} slow bodies: VmHWM while sending", f"{hwm_during} kB"),
            (f"{count} slow bodies: after close", after_close(d))]


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--port", type=int, default=18650)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--slow", type=int, default=400)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--small-cap", type=int, default=200)
    a = ap.parse_args()
    raise_fd_limit(4096)
    small = f"[server]\nmax_connections = {a.small_cap}\n"
    for r in range(a.rounds):
        for label, binary, port in [("before", a.before, a.port), ("after", a.after, a.port + 1)]:
            for config, case in ((None, lambda d: idle_flood(d, a.idle, a.samples)),
                                 (small, lambda d: full_cap_flood(d, a.idle, a.samples,
                                                                  a.small_cap)),
                                 (small, lambda d: full_cap_flood(d, a.idle, a.samples,
                                                                  a.small_cap, True)),
                                 (None, lambda d: slow_bodies(d, a.slow, a.samples))):
                d = Daemon(binary, port, config_text=config).start()
                try:
                    for what, result in case(d):
                        print(f"round {r + 1}\t{label}\t{what}\t{result}", flush=True)
                finally:
                    d.stop()


if __name__ == "__main__":
    sys.exit(main())
