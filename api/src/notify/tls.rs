//! TLS for the MQTT connection and HTTPS webhooks: rustls with the *ring* provider (the one
//! reqwest falls back to, so every HTTP client in the workspace builds without a process-wide
//! default), the system's CA certificates, and optionally a CA file of the operator's (a
//! private broker's or receiver's certificate authority).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use super::NotifyError;

/// A client configuration trusting the system's CAs and those in `ca_file` (PEM).
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, NotifyError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bad = |e: String| NotifyError::Tls(format!("{}: {e}", path.display()));
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        let mut n = 0;
        for cert in iter {
            roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("no PEM certificate in the file".into()));
        }
    } else if added == 0 {
        return Err(NotifyError::Tls(
            "no CA certificates found on the system (install ca-certificates)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_load_and_a_bad_ca_file_is_named() -> Result<(), Box<dyn std::error::Error>> {
        assert!(client_config(None).is_ok());
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate")?;
        let Err(e) = client_config(Some(&f)) else { panic!("accepted a file without certificates") };
        assert!(e.to_string().contains("ca.pem"), "{e}");
        Ok(())
    }

    #[test]
    fn plain_http_clients_still_build_without_a_default_provider() {
        // With rustls compiled into reqwest but no provider it would panic here: the tests'
        // own clients (and any other code's) build them this way.
        assert!(reqwest::Client::builder().build().is_ok());
    }
}
