//! The accept loop: HTTP/1.1 (hyper) over plain TCP or TLS (rustls on ring), with the
//! limits a LAN-facing daemon needs, which `axum::serve` does not offer:
//!
//! - at most `max_connections` connections, and `max_connections_per_ip` from one peer
//!   address; when a cap is full, the connection idle longest is closed to admit the
//!   new one (`connections.rs`), and only when all are busy is the new one closed at
//!   once, before any read, so descriptors stay free for everyone else;
//! - a connection that has not sent a complete request head within `header_timeout`
//!   is closed (also between requests of a kept-alive connection); the TLS handshake
//!   has the same time;
//! - request bodies have `body_timeout` in all (see `request::read_body`), and the
//!   token is checked from the headers before any body is read (`handlers::run`).
//!
//! Shutdown: the listener stops, open connections finish their request in flight.

use std::future::Future;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::connections::{Admission, Conn, Registry, TrackedBody};
use super::{router, ApiState};

/// Connection limits, from `[server]` (configs/facegate.toml documents each).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            max_connections_per_ip: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// hyper's own limits sit above the ones the router checks (`check_head`), so that a
/// large head is answered by the router, in the envelope; only heads beyond these get
/// hyper's bare 431.
const HYPER_MAX_BUF: usize = 256 * 1024;
const HYPER_MAX_HEADERS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(String),
    #[error("{0}: no PEM private key in it")]
    NoKey(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
}

/// The server's TLS configuration from PEM files: its certificate chain and key, and
/// optionally the CA whose certificates clients must present.
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|source| TlsError::Read {
                path: path.display().to_string(),
                source,
            })
    };
    let read_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Read {
            path: path.clone(),
            source,
        }
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.display().to_string()));
    }
    let private_key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(read_err(key))?
        .ok_or_else(|| TlsError::NoKey(key.display().to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut open(ca)?) {
                roots
                    .add(c.map_err(read_err(ca))?)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// lets open connections finish their request in flight.
pub async fn serve_connections(
    listener: TcpListener,
    state: Arc<ApiState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.options.limits;
    let app = router(state);
    let registry = Registry::new(limits.max_connections, limits.max_connections_per_ip);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or similar: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (admission, slot) = registry.admit(peer.ip());
        let Some(slot) = slot else {
            tracing::debug!(%peer, "connection refused: connection cap reached, none idle");
            drop(stream);
            continue;
        };
        if admission == (Admission::Admitted { evicted: true }) {
            tracing::debug!(%peer, "admitted after closing an idle connection");
        }
        let _ = stream.set_nodelay(true);
        let conn = slot.0.clone();
        let app = app.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let serve = async {
                match acceptor {
                    None => serve_one(&http, watcher, stream, app, &conn, peer).await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                                .await;
                        match handshake {
                            Ok(Ok(tls)) => serve_one(&http, watcher, tls, app, &conn, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            // Evicted (idle while the caps were full): dropping the connection closes it.
            tokio::select! {
                () = serve => {}
                () = conn.evicted() => tracing::debug!(%peer, "idle connection evicted"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves one connection's requests: each carries the peer's address (`ConnectInfo`,
/// for the login budgets) and keeps the connection busy until its answer is sent.
async fn serve_one<S>(
    http: &hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    app: axum::Router,
    conn: &Arc<Conn>,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = conn.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let busy = conn.begin_request();
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = tower_service::Service::call(&mut app.clone(), request);
        async move {
            let response = answer.await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| axum::body::Body::new(TrackedBody::new(body, busy))),
            )
        }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
