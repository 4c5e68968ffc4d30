//! Why a connection to the broker failed, worded for the operator's log.

use rumqttc::{ConnectReturnCode, ConnectionError};

/// Why a connection attempt failed, worded for the operator.
pub(super) enum Failure {
    Credentials(ConnectReturnCode),
    /// Closed while connecting, credentials sent: what some brokers (rumqttd) do with
    /// wrong ones, instead of answering a refusal code.
    ClosedAtConnect(String),
    Refused(ConnectReturnCode),
    Tls(String),
    Unreachable(String),
}

impl Failure {
    pub(super) fn of(e: &ConnectionError, connecting_with_credentials: bool) -> Failure {
        match e {
            ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted)
                if connecting_with_credentials =>
            {
                Failure::ClosedAtConnect(e.to_string())
            }
            ConnectionError::Io(io)
                if connecting_with_credentials
                    && matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::BrokenPipe
                    ) =>
            {
                Failure::ClosedAtConnect(e.to_string())
            }
            ConnectionError::ConnectionRefused(
                code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
            ) => Failure::Credentials(*code),
            ConnectionError::ConnectionRefused(code) => Failure::Refused(*code),
            ConnectionError::Tls(e) => Failure::Tls(e.to_string()),
            ConnectionError::Io(io)
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
            {
                Failure::Tls(io.to_string())
            }
            e => Failure::Unreachable(e.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Credentials(code) => write!(
                f,
                "the broker refused our credentials ({code:?}): check [sync] username and password"
            ),
            Failure::ClosedAtConnect(e) => write!(
                f,
                "the broker closed the connection while we logged in ({e}): check [sync] username and password"
            ),
            Failure::Refused(code) => write!(f, "the broker refused the connection ({code:?})"),
            Failure::Tls(e) => write!(
                f,
                "TLS with the broker failed: {e} (check the mqtts:// host name and [sync] ca_file, client_cert, client_key)"
            ),
            Failure::Unreachable(e) => write!(f, "{e}"),
        }
    }
}
