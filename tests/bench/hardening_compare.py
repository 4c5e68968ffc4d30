#!/usr/bin/env python3
"""Issue #15 before/after: runs the hostile cases against two facegate binaries (same
run, same machine) and prints status, time and peak RSS (VmHWM) per case.

    tests/bench/hardening_compare.py BEFORE_BIN AFTER_BIN [--port 18600] [--only NAME,...]

Each daemon gets its own temp data folder and port; the LiteRT library comes from
FACEGATE_LITERT_LIB (or the binary's own search). Run from the repository root (models
and fixtures are found there). Only 127.0.0.1 is used; every loop is bounded.
"""
import argparse, base64, json, os, resource, socket, ssl, statistics, subprocess, sys
import tempfile, threading, time, zlib, struct, io

from benchlib import ROOT, Daemon
FIX = os.path.join(ROOT, "tests/fixtures/api")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png():
    """12000 x 4166 RGBA 16-bit of zeros: ~0.5 MB on disk, 400 MB decoded."""
    w, h = 12000, 4166
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + w * 8)
    parts = [comp.compress(row) for _ in range(h)] + [comp.flush()]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def jpeg_of(path):
    # A baseline JPEG of a fixture via the facegate binary is not available; use PIL if
    # present, else the JPEG fixture.
    try:
        from PIL import Image
        buf = io.BytesIO()
        Image.open(path).convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue()
    except ImportError:
        return open(os.path.join(FIX, "bbt3.jpg"), "rb").read()


def bomb_jpeg():
    """A ~1 KB JPEG whose frame header claims 11000 x 4500: the tables and frame header
    of a real JPEG (APPn segments dropped), 300 bytes of its scan, EOI."""
    j = open(os.path.join(FIX, "bbt3.jpg"), "rb").read()
    out = bytearray(b"\xff\xd8")
    i = 2
    while i < len(j):
        marker = j[i + 1]
        length = struct.unpack(">H", j[i + 2:i + 4])[0]
        seg = bytearray(j[i:i + 2 + length])
        if marker in (0xC0, 0xC1, 0xC2):
            seg[5:7] = struct.pack(">H", 4500)
            seg[7:9] = struct.pack(">H", 11000)
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            out += seg
        i += 2 + length
        if marker == 0xDA:
            out += j[i:i + 300] + b"\xff\xd9"
            break
    return bytes(out)


def request(port, method, path, headers=None, body=b"", timeout=120, tls=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        s = tls.wrap_socket(s, server_hostname="127.0.0.1")
    h = {"Host": "x", "Connection": "close", "Content-Length": str(len(body))}
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s.sendall(head.encode() + body)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        pass
    s.close()
    text = out.decode("latin-1")
    http = int(text.split()[1]) if text.startswith("HTTP/") else 0
    body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""
    status = None
    try:
        j = json.loads(body[body.find("{"):body.rfind("}") + 1])
        status = (j.get("risetai") or j).get("status")
    except Exception:
        pass
    return http, status


def api(d, endpoint, payload, tls=None):
    return request(d.port, "POST", f"/face-api/{endpoint}",
                   {"Accesstoken": d.token, "Content-Type": "application/json"},
                   json.dumps(payload).encode(), tls=tls)


def b64(b):
    return base64.b64encode(b).decode()


def timed(f):
    t = time.monotonic()
    try:
        r = f()
    except OSError as e:
        r = (f"error {e.errno}", None)
    return r, time.monotonic() - t


def case_pictures(d):
    api(d, "facegallery/create-facegallery", {"facegallery_id": "door"})
    api(d, "facegallery/enroll-face", {"facegallery_id": "door", "user_id": "amy", "user_name": "Amy",
                                       "image": b64(open(os.path.join(FIX, "amy1.png"), "rb").read())})
    rows = []
    png = bomb_png()
    jpg = bomb_jpeg()
    face = jpeg_of(os.path.join(FIX, "amy2.png"))
    cut = face[: len(face) * 2 // 3] + b"\xff\xd9"
    pngface = open(os.path.join(FIX, "amy2.png"), "rb").read()
    for name, pic in [("bomb PNG 16-bit 12000x4166 (%d B)" % len(png), png),
                      ("bomb JPEG claims 11000x4500 (%d B)" % len(jpg), jpg),
                      ("JPEG cut 2/3 + EOI", cut), ("JPEG missing last 3 bytes", face[:-3]),
                      ("PNG missing last byte", pngface[:-1])]:
        r, t = timed(lambda: api(d, "facegallery/identify-face", {"facegallery_id": "door", "image": b64(pic)}))
        rows.append((name, r, t, d.status("VmHWM")))
    # Six bombs at once (3 PNG + 3 JPEG).
    res = []
    def one(p):
        res.append(api(d, "facegallery/identify-face", {"facegallery_id": "door", "image": b64(p)}))
    t0 = time.monotonic()
    ts = [threading.Thread(target=one, args=([png, jpg][i % 2],)) for i in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    rows.append(("six bombs at once", sorted(set(res)), time.monotonic() - t0, d.status("VmHWM")))
    return rows


def case_ids(d):
    rows = []
    for name, payload, ep in [
        ("gallery id 120 emoji", {"facegallery_id": "\U0001F6AA" * 120}, "facegallery/create-facegallery"),
        ("user id 100 emoji", {"facegallery_id": "door", "user_id": "\U0001F600" * 100, "user_name": "x",
                               "image": b64(open(os.path.join(FIX, "amy1.png"), "rb").read())}, "facegallery/enroll-face"),
    ]:
        r, t = timed(lambda: api(d, ep, payload))
        rows.append((name, r, t, d.status("VmHWM")))
    return rows


def identify_median(d, n=30, tls=None):
    img = b64(open(os.path.join(FIX, "amy2.png"), "rb").read())
    times = []
    for _ in range(n):
        _, t = timed(lambda: api(d, "facegallery/identify-face", {"facegallery_id": "door", "image": img}, tls=tls))
        times.append(t)
    return statistics.median(times) * 1000


def case_login(d):
    d.admin("client", "add", "app", "--password", stdin="hunter2\n")
    rows = []
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = request(d.port, "POST", "/oauth/client/token", form, b"client_id=app&password=hunter2%00")
    rows.append(("password hunter2\\0 for hunter2", r, 0, d.status("VmHWM")))
    t_known = [timed(lambda: request(d.port, "POST", "/oauth/client/token", form, b"client_id=app&password=x"))[1] for _ in range(3)]
    t_unknown = [timed(lambda: request(d.port, "POST", "/oauth/client/token", form, b"client_id=nobody&password=x"))[1] for _ in range(3)]
    rows.append(("wrong password: known vs unknown name (ms)", (round(statistics.median(t_known) * 1000, 1), round(statistics.median(t_unknown) * 1000, 1)), 0, 0))
    quiet = identify_median(d)
    stop = threading.Event()
    sent = [0]
    codes = {}
    def flood():
        while not stop.is_set():
            c = request(d.port, "POST", "/oauth/client/token", form, b"client_id=app&password=wrong")[0]
            codes[c] = codes.get(c, 0) + 1
            sent[0] += 1
    ts = [threading.Thread(target=flood) for _ in range(4)]
    t0 = time.monotonic()
    [t.start() for t in ts]
    time.sleep(1)
    loud = identify_median(d)
    stop.set()
    [t.join() for t in ts]
    rate = sent[0] / (time.monotonic() - t0)
    rows.append((f"identify median ms quiet -> during wrong-password flood ({rate:.0f} req/s, {codes})", (round(quiet, 1), round(loud, 1)), 0, d.status("VmHWM")))
    return rows


def case_connections(d):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 30000), hard))
    target = min(20000, min(hard, 30000) - 600)
    rows = []
    idle = []
    for _ in range(target):
        try:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", d.port))
            idle.append(s)
        except OSError:
            break
    time.sleep(1)
    lat = []
    for _ in range(5):
        (r, t) = timed(lambda: request(d.port, "GET", "/healthz", timeout=5))
        lat.append((r[0], round(t * 1000, 1)))
        time.sleep(0.2)
    rows.append((f"{len(idle)} idle connections: /healthz (http, ms) x5", lat, 0, d.status("VmHWM")))
    rows.append(("  daemon fds / RSS kB with them open", (d.fds(), d.status("VmRSS")), 0, 0))
    for s in idle:
        s.close()
    idle = []
    # 400 slow bodies: 7 MB announced, no token, sent in 64 KB pieces up to 7 MB - 1.
    slow = []
    for _ in range(400):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", d.port))
            s.sendall(b"POST /face-api/facegallery/identify-face HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7340032\r\n\r\n")
            slow.append(s)
        except OSError:
            pass
    piece = b"a" * 65536
    sent = 0
    deadline = time.monotonic() + 40
    while sent < 7340031 - 65536 and time.monotonic() < deadline:
        alive = 0
        for s in slow:
            try:
                s.send(piece)
                alive += 1
            except OSError:
                pass
        sent += len(piece)
        if alive == 0:
            break
    (r, t) = timed(lambda: request(d.port, "GET", "/healthz", timeout=10))
    rows.append((f"400 slow 7 MB bodies without token: /healthz, bytes sent each {sent}", (r[0], round(t * 1000, 1)), 0, d.status("VmHWM")))
    for s in slow:
        s.close()
    time.sleep(2)
    rows.append(("  after they closed: fds / RSS kB / VmHWM kB", (d.fds(), d.status("VmRSS"), d.status("VmHWM")), 0, 0))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--port", type=int, default=18600)
    ap.add_argument("--only", default="pictures,ids,login,connections")
    a = ap.parse_args()
    only = a.only.split(",")
    cases = [("pictures", case_pictures), ("ids", case_ids), ("login", case_login), ("connections", case_connections)]
    for label, binary, port in [("before", a.before, a.port), ("after", a.after, a.port + 1)]:
        for name, f in cases:
            if name not in only:
                continue
            d = Daemon(binary, port)
            d.token = d.admin("client", "add", "kiosk")
            d.start()
            try:
                if name != "pictures":
                    api(d, "facegallery/create-facegallery", {"facegallery_id": "door"})
                    api(d, "facegallery/enroll-face", {"facegallery_id": "door", "user_id": "amy", "user_name": "Amy",
                                                       "image": b64(open(os.path.join(FIX, "amy1.png"), "rb").read())})
                for row in f(d):
                    name_, r, t, hwm = row
                    print(f"{label}\t{name}\t{name_}\t{r}\t{t:.3f}s\tVmHWM {hwm} kB", flush=True)
            finally:
                d.stop()


if __name__ == "__main__":
    main()
