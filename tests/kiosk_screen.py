#!/usr/bin/env python3
"""Opens a page in headless Chromium and waits until an element shows the expected text,
then saves a screenshot. Drives Chromium over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages on fds 3/4), Python standard library only.

Chromium's --dump-dom/--screenshot take their picture at the load event, and with
--virtual-time-budget a page holding an EventSource open never lets virtual time run
out, so a live page is watched this way instead.

    kiosk_screen.py URL SELECTOR EXPECTED SCREENSHOT.png [TIMEOUT_SECONDS]

Prints the element's text and the page's visit names; exit 0 when the text equals
EXPECTED, 1 otherwise.
"""
import base64
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time


def high(fd):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, profile):
        to_chrome_r, to_chrome_w = (high(fd) for fd in os.pipe())
        from_chrome_r, from_chrome_w = (high(fd) for fd in os.pipe())

        def child_fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
            ],
            preexec_fn=child_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.inp = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.out.write(json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = self.inp.read(65536)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    url, selector, expected, shot = sys.argv[1:5]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(profile)
        try:
            target = browser.call("Target.createTarget", url="about:blank")["targetId"]
            session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            browser.call("Emulation.setDeviceMetricsOverride", session,
                         width=1280, height=800, deviceScaleFactor=1, mobile=False)
            browser.call("Page.enable", session)
            browser.call("Page.navigate", session, url=url)

            def evaluate(expression):
                result = browser.call("Runtime.evaluate", session,
                                      expression=expression, returnByValue=True)
                return result.get("result", {}).get("value")

            text = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent")
                if text == expected:
                    break
                time.sleep(0.2)
            # Let the live frame arrive before the picture is taken.
            evaluate("new Promise(r => setTimeout(r, 1000))")
            time.sleep(1)
            names = evaluate("[...document.querySelectorAll('#visits .name')].map(e => e.textContent)")
            png = browser.call("Page.captureScreenshot", session, format="png")["data"]
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png))
        finally:
            browser.close()
    print(f"{selector}: {text!r}")
    print(f"visits: {names}")
    print(f"screenshot: {shot}")
    return 0 if text == expected else 1


if __name__ == "__main__":
    sys.exit(main())
