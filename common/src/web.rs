//! TLS and basic authentication for every listener, from a web configuration file in the
//! format of the Prometheus exporter toolkit (`--web.config.file`), so one file serves
//! Prometheus, its exporters and omen alike:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # PEM: the certificate, then its chain
//!   key_file: server.key             # PEM: PKCS#8, PKCS#1 or SEC1
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default),
//!   client_ca_file: clients-ca.crt                 #    VerifyClientCertIfGiven
//!   min_version: TLS12               # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Relative paths are taken from the file's directory. The file is read again when it
//! changes (checked as connections arrive, at most once a second), so certificates are
//! rotated without a restart; a new file that does not load is logged and the last good
//! one kept. What this does not take (TLS 1.0 and 1.1, cipher suite and curve choices,
//! `http_server_config`) is refused by name when the file is read.
//!
//! TLS is rustls on the `ring` provider. Passwords are checked with the `bcrypt` crate; a
//! password that matched is remembered (for a few users at most) so that a scraper does
//! not pay bcrypt's deliberate cost on every request, as the exporter toolkit does.

use std::collections::{BTreeMap, HashSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::tls::{pem_certificates, root_store};

#[derive(Debug, Error)]
pub enum WebConfigError {
    #[error("web config {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("web config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("web config {path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// Inline PEM, instead of `cert_file`.
    #[serde(default)]
    cert: Option<String>,
    /// Inline PEM, instead of `key_file`.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// What a loaded file asks of each connection and request.
pub struct WebSecurity {
    tls: Option<TlsAcceptor>,
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    /// `user:password` pairs that matched their hash.
    verified: Mutex<HashSet<String>>,
}

/// Passwords remembered after a match, all forgotten when more arrive.
const VERIFIED_PAIRS: usize = 64;

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebSecurity {
    /// Reads and checks the file at `path`: certificates and keys loaded, every hash a
    /// bcrypt hash.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: WebConfigFile =
            serde_yaml::from_str(&text).map_err(|source| WebConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |field: &str, reason: String| WebConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(
                    &format!("basic_auth_users.{user}"),
                    "not a bcrypt hash ($2y$...)".to_owned(),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(tls) => Some(TlsAcceptor::from(Arc::new(
                server_config(&tls, base).map_err(|(field, reason)| invalid(field, reason))?,
            ))),
            None => None,
        };
        Ok(Self {
            tls,
            users: file.basic_auth_users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Whether a request with `headers` may be answered: always without users, else with
    /// `Authorization: Basic` naming a user and their password.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(pair) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok())
        else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.contains(&pair) {
            return true;
        }
        drop(verified);
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_PAIRS {
            verified.clear();
        }
        verified.insert(pair);
        true
    }
}

fn version(name: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!("{name} is not offered (TLS12 or TLS13)")),
        other => Err(format!("unknown version `{other}` (TLS12 or TLS13)")),
    }
}

fn read_pem(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    base: &Path,
) -> Result<Vec<u8>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give the file or the inline PEM, not both".to_owned()),
        (Some(pem), None) => Ok(pem.clone().into_bytes()),
        (None, Some(file)) => std::fs::read(base.join(file))
            .map_err(|e| format!("{}: {e}", base.join(file).display())),
        (None, None) => Err("required with tls_server_config".to_owned()),
    }
}

type FieldError = (&'static str, String);

fn server_config(tls: &TlsServerConfig, base: &Path) -> Result<ServerConfig, FieldError> {
    let chain = read_pem(tls.cert.as_ref(), tls.cert_file.as_ref(), base)
        .and_then(|pem| pem_certificates(&pem))
        .map_err(|reason| ("tls_server_config.cert_file", reason))?;
    let key = read_pem(tls.key.as_ref(), tls.key_file.as_ref(), base)
        .and_then(|pem| {
            PrivateKeyDer::from_pem_reader(BufReader::new(&pem[..]))
                .map_err(|e| format!("not a PEM private key: {e}"))
        })
        .map_err(|reason| ("tls_server_config.key_file", reason))?;
    let min = version(tls.min_version.as_deref().unwrap_or("TLS12"))
        .map_err(|reason| ("tls_server_config.min_version", reason))?;
    let max = version(tls.max_version.as_deref().unwrap_or("TLS13"))
        .map_err(|reason| ("tls_server_config.max_version", reason))?;
    let versions: Vec<_> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| {
            let number = u16::from(v.version);
            number >= u16::from(min.version) && number <= u16::from(max.version)
        })
        .collect();
    if versions.is_empty() {
        return Err((
            "tls_server_config.max_version",
            "below min_version".to_owned(),
        ));
    }
    let provider = crate::tls::crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("tls_server_config.min_version", e.to_string()))?;
    let auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let field = "tls_server_config.client_ca_file";
            let file = tls
                .client_ca_file
                .as_ref()
                .ok_or((field, format!("required with client_auth_type {auth}")))?;
            let pem = std::fs::read(base.join(file))
                .map_err(|e| (field, format!("{}: {e}", base.join(file).display())))?;
            let roots = root_store(&pem).map_err(|reason| (field, reason))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| (field, e.to_string()))?,
            )
        }
        other => {
            return Err((
                "tls_server_config.client_auth_type",
                format!(
                    "`{other}` is not offered (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ),
            ))
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        (
            "tls_server_config.key_file",
            format!("does not match the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A web configuration file and what it last loaded as; see the module.
#[derive(Debug)]
pub struct WebConfig {
    path: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    security: Arc<WebSecurity>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// How often a changed file is looked for.
const RECHECK: Duration = Duration::from_secs(1);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl WebConfig {
    /// Loads the file at `path`; an error names the file and the field at fault.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let modified = modified(path);
        let security = Arc::new(WebSecurity::load(path)?);
        info!(
            path = %path.display(),
            tls = security.tls.is_some(),
            users = security.users.len(),
            "web config loaded"
        );
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(Loaded {
                security,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// What applies to a connection arriving now: the file as it is now, if it changed
    /// and loads, else as it was.
    pub fn current(&self) -> Arc<WebSecurity> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = modified(&self.path);
            if now != state.modified {
                state.modified = now;
                match WebSecurity::load(&self.path) {
                    Ok(security) => {
                        info!(path = %self.path.display(), "web config changed: reloaded");
                        state.security = Arc::new(security);
                    }
                    Err(error) => {
                        warn!(%error, "web config changed but does not load: keeping the last good one")
                    }
                }
            }
        }
        state.security.clone()
    }
}

#[cfg(all(test, feature = "pki"))]
mod tests {
    use super::*;
    use crate::pki::test_pki;

    fn write_config(dir: &Path, cert: &Path, extra: &str) -> PathBuf {
        let path = dir.join("web.yml");
        let text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: server.key\n{extra}",
            cert.display()
        );
        std::fs::write(&path, text).expect("a web config");
        path
    }

    #[test]
    fn a_file_that_cannot_work_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().expect("a directory");
        let pki = test_pki(dir.path());
        for (extra, field) in [
            (
                "basic_auth_users:\n  alice: plain\n",
                "basic_auth_users.alice",
            ),
            ("  min_version: TLS11\n", "min_version"),
            (
                "  client_auth_type: RequireAnyClientCert\n",
                "client_auth_type",
            ),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            (
                "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites",
            ),
            ("http_server_config: {}\n", "http_server_config"),
        ] {
            let path = write_config(dir.path(), &pki.server_cert, extra);
            let error = WebSecurity::load(&path).unwrap_err().to_string();
            assert!(error.contains(field), "{extra}: {error}");
        }
        // The client's key with the server's certificate.
        let path = dir.path().join("web.yml");
        let text = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: {}\n",
            pki.client_key.display()
        );
        std::fs::write(&path, text).unwrap();
        let error = WebSecurity::load(&path).unwrap_err().to_string();
        assert!(error.contains("does not match"), "{error}");
    }
}
