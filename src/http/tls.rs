//! TLS on the webhook listener (rustls with the ring provider). The certificate is served
//! through a resolver that can swap in a renewed pair while connections keep arriving, so
//! rotating the files (cert-manager, certbot) needs no restart; a pair that fails to load is
//! reported and the old one kept, since a half-written renewal must not take the bridge down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::ServerTls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate chain {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS private key {path}: {reason}")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("TLS private key {key} does not belong to certificate {certificate}: {reason}")]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate currently served, and what is needed to notice and load a renewal.
pub struct CertificateStore {
    files: ServerTls,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    loaded_versions: Mutex<FileVersions>,
}

/// Modification times of the two files when they were last loaded.
type FileVersions = (Option<SystemTime>, Option<SystemTime>);

impl fmt::Debug for CertificateStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CertificateStore")
            .field("certificate_path", &self.files.certificate_path)
            .finish_non_exhaustive()
    }
}

impl CertificateStore {
    /// Loads the pair once; an unreadable or mismatched pair is a start-up error.
    pub fn open(files: &ServerTls) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let versions = file_versions(files);
        let key = load(files, &provider)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
            loaded_versions: Mutex::new(versions),
        }))
    }

    /// An acceptor for the webhook listener. Only HTTP/1.1 is served, so only it is offered.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Loads the pair again if either file changed since the last load. `Ok(true)` means new
    /// connections now get the renewed certificate.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let versions = file_versions(&self.files);
        let mut loaded = self
            .loaded_versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *loaded == versions {
            return Ok(false);
        }
        // Remembered even when loading fails, so a broken renewal is reported once, not on
        // every check; the next write to either file is tried again.
        *loaded = versions;
        let key = load(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(true)
    }

    /// Checks the files every `reload_interval_seconds` until `stop`; 0 never checks.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.files.reload_interval_seconds;
        if interval.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let store = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(
                    certificate = %self.files.certificate_path.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    "TLS certificate changed but cannot be loaded; still serving the previous one"
                ),
                Err(error) => tracing::error!(%error, "TLS certificate check failed"),
            }
        }
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn file_versions(files: &ServerTls) -> FileVersions {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    (
        modified(&files.certificate_path),
        modified(&files.private_key_path),
    )
}

fn load(files: &ServerTls, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate {
        path: files.certificate_path.clone(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&files.certificate_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| certificate_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error(
            "no PEM \"CERTIFICATE\" section".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.private_key_path).map_err(|error| {
        TlsError::PrivateKey {
            path: files.private_key_path.clone(),
            reason: error.to_string(),
        }
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Mismatch {
        certificate: files.certificate_path.clone(),
        key: files.private_key_path.clone(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Pair {
        certificate: String,
        key: String,
    }

    fn generate(name: &str) -> Pair {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .expect("self-signed certificate");
        Pair {
            certificate: generated.cert.pem(),
            key: generated.signing_key.serialize_pem(),
        }
    }

    fn write(directory: &Path, pair: &Pair) -> ServerTls {
        let files = ServerTls {
            certificate_path: directory.join("tls.crt"),
            private_key_path: directory.join("tls.key"),
            reload_interval_seconds: Duration::from_secs(1),
        };
        std::fs::write(&files.certificate_path, &pair.certificate).expect("write certificate");
        std::fs::write(&files.private_key_path, &pair.key).expect("write key");
        files
    }

    fn served(store: &CertificateStore) -> CertificateDer<'static> {
        store.current.read().expect("lock").cert[0].clone()
    }

    fn pem_der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    #[test]
    fn a_key_from_another_certificate_is_refused_naming_both_files() {
        let directory = tempfile::tempdir().expect("tempdir");
        let first = generate("first.example");
        let second = generate("second.example");
        let files = write(
            directory.path(),
            &Pair {
                certificate: first.certificate,
                key: second.key,
            },
        );
        let error = CertificateStore::open(&files).expect_err("mismatched pair");
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("tls.crt") && message.contains("tls.key"),
            "{message}"
        );
    }

    #[test]
    fn a_file_without_a_certificate_or_key_is_refused() {
        let directory = tempfile::tempdir().expect("tempdir");
        let pair = generate("bridge.example");
        let files = write(
            directory.path(),
            &Pair {
                certificate: pair.key.clone(),
                key: pair.key.clone(),
            },
        );
        let error = CertificateStore::open(&files).expect_err("no certificate");
        assert!(matches!(error, TlsError::Certificate { .. }), "{error}");

        let files = write(
            directory.path(),
            &Pair {
                certificate: pair.certificate.clone(),
                key: pair.certificate,
            },
        );
        let error = CertificateStore::open(&files).expect_err("no key");
        assert!(matches!(error, TlsError::PrivateKey { .. }), "{error}");
    }

    #[test]
    fn a_renewed_pair_replaces_the_served_one_and_a_broken_renewal_keeps_it() {
        let directory = tempfile::tempdir().expect("tempdir");
        let first = generate("bridge.example");
        let files = write(directory.path(), &first);
        let store = CertificateStore::open(&files).expect("first pair loads");
        assert_eq!(served(&store), pem_der(&first.certificate));
        assert!(!store.reload_if_changed().expect("unchanged"));

        let renewed = generate("bridge.example");
        // Modification times have a coarse granularity on some filesystems.
        std::thread::sleep(Duration::from_millis(20));
        write(directory.path(), &renewed);
        assert!(store.reload_if_changed().expect("renewal loads"));
        assert_eq!(served(&store), pem_der(&renewed.certificate));

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&files.private_key_path, "half-written").expect("write");
        assert!(store.reload_if_changed().is_err());
        assert_eq!(served(&store), pem_der(&renewed.certificate));
        assert!(!store.reload_if_changed().expect("reported once"));
    }
}
