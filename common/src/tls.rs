//! TLS shared by every server and client of omen: the rustls crypto provider.

use std::sync::Arc;

/// The TLS provider of every server and client: rustls on `ring`. It has no post-quantum
/// key exchange, which rustls 0.23.48 marks by deprecating it; `aws-lc-rs`, which has,
/// needs cmake and minutes more of building on every clean build.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
