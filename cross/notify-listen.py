#!/usr/bin/env python3
"""Plays systemd's side of sd_notify for tests: binds a unix datagram socket at SOCKET and
appends each message it receives, with the seconds since start, to LOG.

    cross/notify-listen.py SOCKET LOG     (runs until killed)
"""
import os
import socket
import sys
import time

path, log = sys.argv[1:3]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
start = time.time()
while True:
    msg = s.recv(4096).decode(errors="replace")
    with open(log, "a") as f:
        f.write(f"{time.time() - start:.2f}s {msg.replace(chr(10), ' ')}\n")
