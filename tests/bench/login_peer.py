#!/usr/bin/env python3
"""One address guessing passwords under many client names: can the real client still
log in from its own address? Before vs after, in the same run (issue #15).

    tests/bench/login_peer.py BEFORE_BIN AFTER_BIN [--port 18660] [--rounds 2]
                              [--seconds 10]

For each round and binary (interleaved), a fresh daemon with a client `app` (password
from FACEGATE_CLIENT_PASSWORD); from 127.0.0.2 a guesser sends wrong passwords for a new
name each time, as fast as answers come, for SECONDS; meanwhile 127.0.0.1 logs in as
`app` with the right password once a second. Prints the guesser's answers (401 = a
password hash spent, 429 = refused before hashing) and the real client's.
The LiteRT library comes from FACEGATE_LITERT_LIB; run from the repository root.
"""
import argparse, collections, sys, threading, time

from benchlib import Daemon, exchange, http_status

PASSWORD = "correct horse"


def login(source, port, name, password):
    body = f"client_id={name}&password={password.replace(' ', '+')}".encode()
    return http_status(exchange(
        source, port,
        b"POST /oauth/client/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body, timeout=30))


def run(binary, port, seconds):
    d = Daemon(binary, port, extra_env={"FACEGATE_CLIENT_PASSWORD": PASSWORD})
    d.admin("client", "add", "app", "--password")
    d.start()
    try:
        stop = time.monotonic() + seconds
        guesses = collections.Counter()

        def guess():
            i = 0
            while time.monotonic() < stop:
                guesses[login("127.0.0.2", port, f"guess{i}", "wrong")] += 1
                i += 1

        guesser = threading.Thread(target=guess)
        guesser.start()
        real = collections.Counter()
        while time.monotonic() < stop:
            real[login("127.0.0.1", port, "app", PASSWORD)] += 1
            time.sleep(1)
        guesser.join()
        return guesses, real
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--port", type=int, default=18660)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    for r in range(a.rounds):
        for label, binary, port in [("before", a.before, a.port), ("after", a.after, a.port + 1)]:
            guesses, real = run(binary, port, a.seconds)
            print(f"round {r + 1}\t{label}\tguesser from 127.0.0.2: {dict(guesses)}"
                  f"\treal client from 127.0.0.1: {dict(real)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
