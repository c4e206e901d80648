//! The certificate the service presents: the one given (`--cert`, `--key`), or
//! a self-signed one made at first start and kept, readable by this service
//! alone, in its state directory. Either way its SHA-256 fingerprint is logged
//! and shown on the status, for a browser's or a client's pinning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The names the self-signed certificate is made for.
const SELF_SIGNED_NAMES: [&str; 4] = ["doorphone", "localhost", "127.0.0.1", "::1"];

pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// `AB:CD:...`, of the first certificate's DER.
    pub fingerprint: String,
}

/// Where the certificate and its key come from.
pub enum Source {
    Given { cert: PathBuf, key: PathBuf },
    SelfSigned { state_dir: PathBuf },
}

pub fn load(source: &Source) -> Result<Tls, String> {
    let (cert, key) = match source {
        Source::Given { cert, key } => (cert.clone(), key.clone()),
        Source::SelfSigned { state_dir } => self_signed(state_dir)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let first = certs
        .first()
        .ok_or_else(|| format!("{}: no certificate", cert.display()))?;
    let fingerprint = fingerprint(first);
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
    })
}

/// The kept self-signed certificate, made first when there is none.
fn self_signed(state_dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert = state_dir.join("tls-cert.pem");
    let key = state_dir.join("tls-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    // The key first: a certificate without its key would be kept forever.
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert, made.cert.pem().as_bytes())?;
    tracing::info!("made a self-signed certificate in {}", cert.display());
    Ok((cert, key))
}

fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
    doorphone_daemon::files::private_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_self_signed_certificate_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::SelfSigned {
            state_dir: dir.path().join("state"),
        };
        let first = load(&source).unwrap();
        for name in ["tls-key.pem", "tls-cert.pem"] {
            let mode = std::fs::metadata(dir.path().join("state").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let again = load(&source).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
    }

    #[test]
    fn a_given_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "not a key").unwrap();
        let e = load(&Source::Given { cert, key }).err().unwrap();
        assert!(e.contains("k.pem"), "{e}");
    }
}
