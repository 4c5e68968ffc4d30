//! systemd's readiness protocol (`sd_notify`), without libsystemd: one datagram of
//! `KEY=VALUE` lines to the unix socket named by `NOTIFY_SOCKET`, which systemd sets for
//! a `Type=notify` service. Outside systemd the variable is unset and every call is a
//! no-op, so callers need no special case.
//!
//! `facegate serve` calls [`ready`] once the models are loaded, the LMDB store is open
//! and the listener is bound (systemd then starts units ordered after facegate), and
//! [`stopping`] when SIGTERM arrives.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub const SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Tells systemd the service is ready (`READY=1`) with a status line. `Ok(false)` when
/// not started by systemd.
pub fn ready(status: &str) -> io::Result<bool> {
    send(&format!("READY=1\nSTATUS={}", one_line(status)))
}

/// Tells systemd the service is shutting down (`STOPPING=1`).
pub fn stopping() -> io::Result<bool> {
    send("STOPPING=1")
}

/// Sends `state` to the socket in `NOTIFY_SOCKET`, if set.
pub fn send(state: &str) -> io::Result<bool> {
    match std::env::var_os(SOCKET_ENV) {
        Some(socket) if !socket.is_empty() => send_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket`: a file-system path, or an abstract
/// socket name written with a leading `@`.
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        send_abstract(&sender, name, state)
    } else if bytes.starts_with(b"/") {
        sender.send_to(state.as_bytes(), socket).map(|_| ())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{SOCKET_ENV}={} is neither a path nor @name",
                socket.display()
            ),
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sender: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sender.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// A status must not break the `KEY=VALUE` framing.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_socket_given_by_path() {
        let dir = std::env::temp_dir().join(format!("facegate-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_name_starts_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("facegate-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn a_relative_socket_path_is_refused() {
        assert!(send_to(OsStr::new("notify"), "READY=1").is_err());
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
