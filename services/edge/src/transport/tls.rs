//! TLS for the TLS and WSS listeners (rustls with the ring provider).
//!
//! The server certificate chain and its private key come from PEM files
//! (the leaf first, then intermediates; the key in PKCS#8, PKCS#1 or SEC1
//! form). With a client CA file, client certificates are verified against
//! it: required with `require_client_cert`, otherwise checked when
//! presented and optional. TLS 1.2 and 1.3 with rustls's safe defaults.
//!
//! The files are watched: when one changes (a renewed certificate), the
//! configuration is rebuilt and new connections use it; open connections
//! keep theirs. A change that does not load (a half-written pair) is logged
//! and the configuration in force stays until the files are whole again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the TLS identity comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
    /// PEM CA certificates that client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca`).
    pub require_client_cert: bool,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: no certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key found")]
    NoKey { path: PathBuf },
    #[error("{path}: unusable CA certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("requiring client certificates needs a client CA file")]
    RequireWithoutCa,
    #[error("client certificate verification: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// How often the certificate, key and CA files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Modification time and length of each file, to notice a change.
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// The TLS configuration in force, rebuilt when its files change.
pub struct ReloadingTls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Stamps>,
}

impl ReloadingTls {
    /// Loads the files; fails when they do not make a configuration.
    pub fn load(settings: &TlsSettings) -> Result<Arc<ReloadingTls>, TlsError> {
        let stamps = stamps(settings);
        let config = server_config(settings)?;
        Ok(Arc::new(ReloadingTls {
            settings: settings.clone(),
            current: RwLock::new(config),
            stamps: Mutex::new(stamps),
        }))
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(locks::read(&self.current).clone())
    }

    /// Rebuilds the configuration if a file changed. `Ok(true)` when a new
    /// configuration is in force; an error leaves the old one in force and
    /// is reported again at the next check.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.settings);
        let changed = *locks::lock(&self.stamps) != now;
        if !changed {
            return Ok(false);
        }
        let config = server_config(&self.settings)?;
        *locks::write(&self.current) = config;
        *locks::lock(&self.stamps) = now;
        Ok(true)
    }
}

fn stamps(settings: &TlsSettings) -> Stamps {
    [
        Some(&settings.cert_chain),
        Some(&settings.key),
        settings.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
    .collect()
}

/// Checks the TLS files every [`RELOAD_CHECK`] and reloads them on change.
pub async fn watch(tls: Arc<ReloadingTls>) {
    let mut tick = tokio::time::interval(RELOAD_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tls.reload_if_changed() {
            Ok(true) => tracing::info!(
                cert = %tls.settings.cert_chain.display(),
                "TLS certificate reloaded; new connections use it"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the certificate in force")
            }
        }
    }
}

/// Builds the server configuration of the TLS and WSS listeners.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    if settings.require_client_cert && settings.client_ca.is_none() {
        return Err(TlsError::RequireWithoutCa);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&settings.cert_chain)?;
    let key = private_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_path)? {
                roots.add(ca).map_err(|e| TlsError::BadCa {
                    path: ca_path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !settings.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_or_broken_set_of_files_keeps_the_configuration() {
        let dir = std::env::temp_dir().join(format!("edge-tls-reload-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let settings = TlsSettings {
            cert_chain: dir.join("absent-chain.pem"),
            key: dir.join("absent-key.pem"),
            client_ca: None,
            require_client_cert: false,
        };
        // Nothing loads from missing files, and nothing is reported changed
        // while they stay missing.
        assert!(ReloadingTls::load(&settings).is_err());
        let before = stamps(&settings);
        assert_eq!(before, vec![None, None]);
        let written = std::fs::write(&settings.key, b"garbage");
        assert!(written.is_ok());
        assert_ne!(stamps(&settings), before, "a new file is a change");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_and_empty_files_are_reported_by_name() {
        let dir = std::env::temp_dir().join(format!("edge-tls-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let empty = dir.join("empty.pem");
        let written = std::fs::write(&empty, b"not pem at all\n");
        assert!(written.is_ok());
        let settings = TlsSettings {
            cert_chain: dir.join("absent.pem"),
            key: empty.clone(),
            client_ca: None,
            require_client_cert: false,
        };
        let missing = server_config(&settings).err().map(|e| e.to_string());
        assert!(
            missing.as_deref().is_some_and(|m| m.contains("absent.pem")),
            "{missing:?}"
        );
        let settings = TlsSettings {
            cert_chain: empty.clone(),
            ..settings
        };
        let no_cert = server_config(&settings).err();
        assert!(
            matches!(no_cert, Some(TlsError::NoCertificate { .. })),
            "{no_cert:?}"
        );
        let settings = TlsSettings {
            require_client_cert: true,
            ..settings
        };
        let _ = std::fs::remove_dir_all(&dir);
        let unverifiable = server_config(&settings).err();
        assert!(
            matches!(unverifiable, Some(TlsError::RequireWithoutCa)),
            "{unverifiable:?}"
        );
    }
}
