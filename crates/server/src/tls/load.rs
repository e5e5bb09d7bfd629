//! Reading certificates, keys and CA files, with errors that name the setting.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// The certificates in a PEM file (at least one).
pub(crate) fn certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub(crate) fn key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason: format!("holds no usable private key: {e}"),
    })
}

/// A CA file as trust roots (every certificate in it).
pub(crate) fn roots(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(setting, path)? {
        store.add(cert).map_err(|e| TlsError::File {
            setting,
            path: path.to_path_buf(),
            reason: format!("is not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// The raw PEM text of a file, for the client side of node-to-node connections.
pub(crate) fn pem(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let e = certs("--tls-cert", &empty)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("--tls-cert") && e.contains("empty.pem"), "{e}");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = key("--tls-key", &missing).expect_err("refused").to_string();
        assert!(e.contains("--tls-key") && e.contains("missing.pem"), "{e}");
        let e = roots("--peer-ca", &missing)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("--peer-ca"), "{e}");
    }
}
