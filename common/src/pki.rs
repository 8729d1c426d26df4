//! Real certificates for tests, made when the test runs (`rcgen`): a CA, a server
//! certificate for `localhost` and `127.0.0.1` signed by it, and a client certificate
//! for mutual TLS, written as PEM files into a directory. Nothing is checked in.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Writes a CA, a server and a client certificate (with their keys) into `dir`.
///
/// # Panics
/// If a certificate cannot be made or written: a test cannot go on without them.
pub fn test_pki(dir: &Path) -> TestPki {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "omen test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, name: &str| {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &ca, &ca_key).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf(
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "localhost",
    );
    let client = leaf(
        vec!["omen-test-client".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "omen-test-client",
    );
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path
    };
    TestPki {
        ca: write("ca.crt", &ca.pem()),
        server_cert: write("server.crt", &server.0),
        server_key: write("server.key", &server.1),
        client_cert: write("client.crt", &client.0),
        client_key: write("client.key", &client.1),
    }
}

/// `GET path` over TLS to `addr` (a client that trusts `pki`'s CA and names the server
/// `localhost`), with `pki`'s client certificate if `client_cert`, and basic auth if
/// `auth` (`user:password`): the status and body, or the error that ended it.
pub fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    pki: &TestPki,
    client_cert: bool,
    auth: Option<&str>,
) -> std::io::Result<(u16, String)> {
    https_request(addr, "GET", path, pki, client_cert, auth, &[], &[])
}

/// Like [`https_get`], for any method, with further `headers` and a `body`.
#[allow(clippy::too_many_arguments)]
pub fn https_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    pki: &TestPki,
    client_cert: bool,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use base64::Engine as _;
    use rustls::pki_types::ServerName;

    let tls = crate::tls::TlsClientConfig {
        ca_file: Some(pki.ca.clone()),
        cert_file: client_cert.then(|| pki.client_cert.clone()),
        key_file: client_cert.then(|| pki.client_key.clone()),
        ..Default::default()
    };
    let config = crate::tls::HttpClientConfig {
        tls_config: Some(tls),
        ..Default::default()
    }
    .rustls()
    .map_err(std::io::Error::other)?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let timeout = std::time::Duration::from_secs(10);
    let socket = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        let encoded = base64::engine::general_purpose::STANDARD.encode(auth);
        request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())?;
    tls.write_all(body)?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes without TLS's close_notify after its whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {answer:?}")))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}
