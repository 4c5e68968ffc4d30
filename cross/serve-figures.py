#!/usr/bin/env python3
"""Cold start and idle memory of `facegate serve`: starts it on a free port with a
NOTIFY_SOCKET (plays systemd's side of Type=notify), reports the seconds to READY=1 (and
to the first /healthz answer), then the resident memory after SETTLE seconds idle.

    cross/serve-figures.py [--settle 3] FACEGATE [ARGS...]      e.g.
    FACEGATE_DATA_DIR=/tmp/g cross/serve-figures.py dist/x86_64/facegate

The data folder comes from the environment (FACEGATE_DATA_DIR) or the config as usual,
so the same command measures an empty gallery and one with 100k templates.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def main():
    args = sys.argv[1:]
    settle = 3.0
    if args[:1] == ["--settle"]:
        settle, args = float(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    tmp = tempfile.mkdtemp(prefix="facegate-figures-")
    notify_path = os.path.join(tmp, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.05)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, FACEGATE_LISTEN=f"127.0.0.1:{port}")
    log = open(os.path.join(tmp, "serve.log"), "w")
    start = time.monotonic()
    proc = subprocess.Popen(args + ["serve"], env=env, stdout=log, stderr=log)
    ready = healthz = None
    body = ""
    try:
        while (ready is None or healthz is None) and time.monotonic() - start < 600:
            if proc.poll() is not None:
                sys.exit(f"serve exited with {proc.returncode}; log: {log.name}")
            try:
                msg = notify.recv(4096).decode(errors="replace")
                if "READY=1" in msg and ready is None:
                    ready = time.monotonic() - start
                    print(f"READY=1 after {ready:.2f} s: {msg.strip()!r}")
            except socket.timeout:
                pass
            if healthz is None:
                try:
                    body = urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/healthz", timeout=2).read().decode()
                    healthz = time.monotonic() - start
                    print(f"/healthz answered after {healthz:.2f} s: {body}")
                except OSError:
                    pass
            if healthz is not None and ready is None and time.monotonic() - start > healthz + 2:
                print("no READY=1 from serve (telemetry::notify::ready not called yet)")
                break
        time.sleep(settle)
        status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status"))
        print(f"after {settle:.0f} s idle: VmRSS {status['VmRSS'].strip()}, "
              f"VmHWM {status['VmHWM'].strip()}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
