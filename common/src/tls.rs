//! TLS shared by every server and client of omen: the rustls crypto provider, and the
//! `http_config` clients take (TLS, basic auth, bearer tokens) in Prometheus' shape.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The TLS provider of every server and client: rustls on `ring`. It has no post-quantum
/// key exchange, which rustls 0.23.48 marks by deprecating it; `aws-lc-rs`, which has,
/// needs cmake and minutes more of building on every clean build.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM text, in order (a leaf, then its chain); none is an error.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_reader_iter(std::io::BufReader::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no certificate".to_owned());
    }
    Ok(certificates)
}

/// The CAs of a PEM text, as the roots a peer's certificate must chain to.
pub fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in pem_certificates(pem)? {
        roots
            .add(certificate)
            .map_err(|e| format!("not a CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// A file's bytes, or an error naming the field and the file.
fn read_file(field: &str, file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{field} {}: {e}", file.display()))
}

/// How a client reaches a server that asks for TLS or credentials, in the shape of
/// Prometheus' `http_config` (as in Alertmanager's `http_config:`): `basic_auth`
/// (`username`, `password` or `password_file`), `authorization` (`type`, default
/// `Bearer`, with `credentials` or `credentials_file`) and `tls_config` (`ca_file`,
/// `cert_file` and `key_file` for a client certificate, `insecure_skip_verify`,
/// `min_version`). Files are read again for every request, so a rotated password or
/// token is picked up; relative paths are taken from the configuration's directory.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub tls_config: Option<TlsClientConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// CAs the server's certificate must chain to; the system's when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate: for tests and emergencies only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `TLS12` (default) or `TLS13`.
    #[serde(default)]
    pub min_version: Option<String>,
}

fn read_secret(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    what: &str,
) -> Result<String, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("{what}: give it or its file, not both")),
        (Some(secret), None) => Ok(secret.clone()),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("{what}_file {}: {e}", file.display())),
        (None, None) => Err(format!("{what}: required")),
    }
}

impl HttpClientConfig {
    /// Takes relative paths from `base`.
    pub fn resolve(&mut self, base: &Path) {
        let join = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(file) = self
            .basic_auth
            .as_mut()
            .and_then(|a| a.password_file.as_mut())
        {
            join(file);
        }
        if let Some(file) = self
            .authorization
            .as_mut()
            .and_then(|a| a.credentials_file.as_mut())
        {
            join(file);
        }
        if let Some(tls) = &mut self.tls_config {
            for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                join(file);
            }
        }
    }

    /// Everything that can be checked before a request: one kind of credentials, files
    /// that read, certificates and keys that load.
    pub fn check(&self) -> Result<(), String> {
        if self.basic_auth.is_some() && self.authorization.is_some() {
            return Err("basic_auth and authorization: give one".to_owned());
        }
        self.authorization_header()?;
        self.rustls()?;
        Ok(())
    }

    /// The `Authorization` header's value, if any, with files read now.
    pub fn authorization_header(&self) -> Result<Option<String>, String> {
        use base64::Engine as _;
        if let Some(auth) = &self.basic_auth {
            let password = read_secret(
                auth.password.as_ref(),
                auth.password_file.as_ref(),
                "basic_auth.password",
            )?;
            let pair = format!("{}:{password}", auth.username);
            return Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )));
        }
        if let Some(auth) = &self.authorization {
            let kind = auth.kind.as_deref().unwrap_or("Bearer");
            if kind.eq_ignore_ascii_case("basic") {
                return Err("authorization.type: Basic is basic_auth's".to_owned());
            }
            let credentials = read_secret(
                auth.credentials.as_ref(),
                auth.credentials_file.as_ref(),
                "authorization.credentials",
            )?;
            return Ok(Some(format!("{kind} {credentials}")));
        }
        Ok(None)
    }

    /// The TLS client configuration: `tls_config`'s CA (else the system's roots),
    /// client certificate and minimum version.
    pub fn rustls(&self) -> Result<rustls::ClientConfig, String> {
        let tls = self.tls_config.clone().unwrap_or_default();
        let provider = crypto_provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version.as_deref() {
            None | Some("TLS12") => &[&rustls::version::TLS12, &rustls::version::TLS13],
            Some("TLS13") => &[&rustls::version::TLS13],
            Some(other) => {
                return Err(format!(
                    "tls_config.min_version: `{other}` (TLS12 or TLS13)"
                ))
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("tls_config: {e}"))?;
        let builder = if tls.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        } else {
            let roots = match &tls.ca_file {
                Some(file) => read_file("tls_config.ca_file", file).and_then(|pem| {
                    root_store(&pem)
                        .map_err(|e| format!("tls_config.ca_file {}: {e}", file.display()))
                })?,
                None => {
                    // The system's roots; unreadable ones are skipped, as Go's client does.
                    let mut roots = rustls::RootCertStore::empty();
                    for certificate in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(certificate);
                    }
                    roots
                }
            };
            builder.with_root_certificates(roots)
        };
        match (&tls.cert_file, &tls.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = read_file("tls_config.cert_file", cert).and_then(|pem| {
                    pem_certificates(&pem)
                        .map_err(|e| format!("tls_config.cert_file {}: {e}", cert.display()))
                })?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("tls_config.key_file {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("tls_config.key_file: {e}"))
            }
            _ => Err("tls_config: cert_file and key_file go together".to_owned()),
        }
    }
}

/// `insecure_skip_verify`: every server certificate is taken; signatures are still
/// checked, so the handshake itself is sound.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> HttpClientConfig {
        serde_yaml::from_str(yaml).expect("an http_config")
    }

    #[test]
    fn credentials_become_the_authorization_header_and_files_are_read_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let basic = config("basic_auth: { username: omen, password: s3cret }");
        assert_eq!(
            basic.authorization_header().unwrap().as_deref(),
            Some("Basic b21lbjpzM2NyZXQ=")
        );
        let token = dir.path().join("token");
        std::fs::write(&token, "abc\n").unwrap();
        let mut bearer = config("authorization: { credentials_file: token }");
        bearer.resolve(dir.path());
        assert_eq!(
            bearer.authorization_header().unwrap().as_deref(),
            Some("Bearer abc")
        );
        std::fs::write(&token, "def").unwrap();
        assert_eq!(
            bearer.authorization_header().unwrap().as_deref(),
            Some("Bearer def")
        );
        assert_eq!(
            HttpClientConfig::default().authorization_header().unwrap(),
            None
        );
        assert!(HttpClientConfig::default().check().is_ok());
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        for (yaml, says) in [
            (
                "basic_auth: { username: a }",
                "basic_auth.password: required",
            ),
            (
                "basic_auth: { username: a, password: b, password_file: c }",
                "not both",
            ),
            (
                "basic_auth: { username: a, password: b }\nauthorization: { credentials: c }",
                "give one",
            ),
            (
                "authorization: { type: Basic, credentials: c }",
                "basic_auth's",
            ),
            (
                "authorization: { credentials_file: /nonexistent/token }",
                "credentials_file",
            ),
            ("tls_config: { ca_file: /nonexistent/ca.crt }", "ca_file"),
            ("tls_config: { cert_file: c.crt }", "go together"),
            ("tls_config: { min_version: TLS11 }", "min_version"),
        ] {
            let error = config(yaml).check().unwrap_err();
            assert!(error.contains(says), "{yaml}: {error}");
        }
        let unknown = serde_yaml::from_str::<HttpClientConfig>("tls_config: { server_name: x }");
        assert!(unknown.unwrap_err().to_string().contains("server_name"));
    }
}
