//! The webhook receiver: a few lines of Python (http.server) that verify the
//! `X-Facegate-Signature` HMAC-SHA256 of the raw body with the shared secret on their
//! own, log every call as a JSON line and answer 200 (verified) or 401.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const RECEIVER: &str = r#"
import hashlib, hmac, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, secret, log = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sent = self.headers.get("X-Facegate-Signature", "")
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        verified = hmac.compare_digest(sent, want)
        with open(log, "a") as f:
            f.write(json.dumps({"verified": verified, "path": self.path,
                                "visit": json.loads(body)}) + "\n")
        self.send_response(200 if verified else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
"#;

/// The Python receiver on `port`; killed on drop.
pub struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    pub fn start(port: u16, secret: &str, dir: &Path) -> Receiver {
        let log = dir.join(format!("webhook-{port}.jsonl"));
        let child = Command::new("python3")
            .args(["-c", RECEIVER, &port.to_string(), secret])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut receiver = Receiver { child, log };
        super::wait_for("the webhook receiver listening", || {
            if let Ok(Some(status)) = receiver.child.try_wait() {
                panic!("receiver exited: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        receiver
    }

    /// Every call received so far: {verified, path, visit}.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
