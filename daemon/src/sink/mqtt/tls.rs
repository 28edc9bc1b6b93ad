//! The TLS files `[mqtt.tls]` names, checked when the client is built and by
//! `hark check-config`: certificates that parse as X.509 and a private key that parses, so a
//! broken file is named once rather than as a TLS failure at every reconnect.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::config::TlsConfig;

/// Checks every file of `tls`; the error names the key and the file (never a key's content).
pub fn check(tls: &TlsConfig) -> Result<()> {
    certificates("mqtt.tls.ca_file", &tls.ca_file)?;
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        certificates("mqtt.tls.client_cert", cert)?;
        private_key("mqtt.tls.client_key", key)?;
    }
    Ok(())
}

fn readable(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key} = {}: cannot read it", path.display()))
}

/// A PEM file of X.509 certificates that parse (not only a `BEGIN CERTIFICATE` line).
fn certificates(key: &str, path: &Path) -> Result<()> {
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    let bytes = readable(key, path)?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert =
            cert.map_err(|e| anyhow::anyhow!("{key} = {}: not a PEM file ({e})", path.display()))?;
        store.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "{key} = {}: a certificate in it is not valid X.509 ({e})",
                path.display()
            )
        })?;
    }
    if store.is_empty() {
        bail!("{key} = {}: no PEM CERTIFICATE block in it", path.display());
    }
    Ok(())
}

/// A PEM private key that parses; the reason is not echoed (the file is a secret).
fn private_key(key: &str, path: &Path) -> Result<()> {
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let bytes = readable(key, path)?;
    if PrivateKeyDer::from_pem_slice(&bytes).is_err() {
        bail!(
            "{key} = {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_that_do_not_parse_are_named() {
        let tls = |ca: &Path| TlsConfig {
            ca_file: ca.to_path_buf(),
            client_cert: None,
            client_key: None,
        };
        let msg = |ca: &Path| format!("{:#}", check(&tls(ca)).unwrap_err());
        let dir = std::env::temp_dir().join(format!("hark-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = msg(&ca);
        assert!(e.contains("mqtt.tls.ca_file") && e.contains("X.509"), "{e}");
        std::fs::write(&ca, "hello\n").unwrap();
        let e = msg(&ca);
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
