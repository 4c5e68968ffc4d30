"""Shared by the Python benchmark scripts of tests/bench: a release daemon on its own
temp data folder and port, and raw HTTP exchanges from a chosen source address.

    d = Daemon(binary, port, config_text=None, extra_env=None)
    token = d.admin("client", "add", "kiosk")   # admin commands before start()
    d.start(); ...; d.stop()
    kept = KeptIdentify(url, token, gallery); kept.identify(jpeg_bytes)  # risetai dict
"""
import base64, http.client, json, os, socket, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Daemon:
    def __init__(self, binary, port, extra_env=None, config_text=None):
        self.dir = tempfile.mkdtemp(prefix="fg-bench-")
        self.port = port
        self.binary = binary
        self.env = dict(os.environ, FACEGATE_DATA_DIR=self.dir,
                        FACEGATE_LISTEN=f"127.0.0.1:{port}", FACEGATE_LOG="warn")
        self.env.update(extra_env or {})
        self.args = []
        if config_text:
            config = os.path.join(self.dir, "bench.toml")
            with open(config, "w") as f:
                f.write(config_text)
            self.args = ["--config", config]
        self.proc = None

    def admin(self, *args, stdin=None):
        """Runs `facegate ARGS` on this daemon's data folder; its last output line."""
        out = subprocess.run([self.binary] + self.args + list(args), cwd=ROOT, env=self.env,
                             capture_output=True, text=True, input=stdin)
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    def start(self):
        self.proc = subprocess.Popen([self.binary] + self.args + ["serve"], cwd=ROOT,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}")
                time.sleep(0.1)
        raise RuntimeError("daemon did not start")

    def status(self, key):
        """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


def exchange(source, port, request, timeout=5.0):
    """Sends the raw `request` on a new connection from address `source` and reads the
    answer until the server closes; b"" when refused or reset."""
    s = socket.socket()
    s.settimeout(timeout)
    out = b""
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        s.close()
    return out


def http_status(answer):
    """The HTTP status of a raw answer, 0 when there was none."""
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0


class KeptIdentify:
    """identify-face over one kept-alive HTTP/1.1 connection, as a kiosk client that
    stays connected to its local daemon sends it (the body is built per call)."""

    def __init__(self, url, token, gallery, trx_id="bench"):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port))
        self.token, self.gallery, self.trx_id = token, gallery, trx_id

    def identify(self, jpeg):
        """The reply's `risetai` object."""
        body = json.dumps({
            "facegallery_id": self.gallery,
            "image": base64.b64encode(jpeg).decode(),
            "trx_id": self.trx_id,
        }).encode()
        self.conn.request("POST", "/face-api/facegallery/identify-face", body=body,
                          headers={"Accesstoken": self.token,
                                   "Content-Type": "application/json"})
        return json.load(self.conn.getresponse())["risetai"]
