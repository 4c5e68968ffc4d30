//! TLS to the broker (`mqtts://`): a rustls client configuration (ring provider, TLS 1.2
//! and 1.3) built from PEM files, so that a bad file is a configuration error at start,
//! not a failed handshake later.
//!
//! Trust: `ca_file` (one or more PEM certificates) when set; otherwise the system's CA
//! certificates (read offline from the usual files, e.g. /etc/ssl/certs), and none found
//! is an error. Mutual TLS: `client_cert` (PEM chain) with `client_key` (PEM PKCS#8,
//! PKCS#1 or SEC1 key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid PEM: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("client_key {0} holds no private key")]
    NoKey(PathBuf),
    #[error("client_cert and client_key go together (one of them is empty)")]
    HalfClientAuth,
    #[error("no ca_file set and no system CA certificates found: set [sync] ca_file")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The PEM files of the `[sync]` section (None: not set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// A ready client configuration and the files it came from (compared by its files).
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub files: TlsFiles,
    pub config: Arc<ClientConfig>,
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl TlsClient {
    pub fn new(files: TlsFiles) -> Result<TlsClient, TlsError> {
        let config = client_config(&files)?;
        Ok(TlsClient { files, config })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates("ca_file", path)? {
                roots.add(cert).map_err(|e| TlsError::BadPem {
                    what: "ca_file",
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(roots)
}

/// Builds the client configuration: checks every file now.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    if files.client_cert.is_some() != files.client_key.is_some() {
        return Err(TlsError::HalfClientAuth);
    }
    let roots = roots(files.ca_file.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.client_cert, &files.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key_path)) => {
            let chain = certificates("client_cert", cert)?;
            let bytes = read("client_key", key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(key_path.clone()),
                e => TlsError::BadPem {
                    what: "client_key",
                    path: key_path.clone(),
                    reason: e.to_string(),
                },
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => return Err(TlsError::HalfClientAuth),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: &Path) -> TlsFiles {
        TlsFiles {
            ca_file: Some(ca.to_path_buf()),
            ..TlsFiles::default()
        }
    }

    #[test]
    fn unreadable_and_invalid_pem_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(&files(&missing)),
            Err(TlsError::Read {
                what: "ca_file",
                ..
            })
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello, not a certificate\n").unwrap();
        assert!(matches!(
            client_config(&files(&junk)),
            Err(TlsError::NoCertificate { .. })
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            client_config(&files(&broken)),
            Err(TlsError::BadPem { .. })
        ));
        let half = TlsFiles {
            client_cert: Some(junk.clone()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            client_config(&half),
            Err(TlsError::HalfClientAuth)
        ));
    }
}
