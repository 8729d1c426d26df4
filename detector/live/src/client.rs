//! The HTTP client of every outgoing request (scrapes, PromQL, Alertmanager, webhooks):
//! reqwest with the TLS and credentials of an `http_config` (`omen_common::tls`).

use std::sync::Arc;
use std::time::Duration;

use omen_common::tls::HttpClientConfig;

/// A client and the credentials it adds to every request.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    config: Arc<HttpClientConfig>,
}

impl HttpClient {
    /// A client for `config` (checked by the configuration), each request bounded by
    /// `timeout` if given.
    pub fn new(config: &HttpClientConfig, timeout: Option<Duration>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().use_preconfigured_tls(config.rustls()?);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        Ok(Self {
            client: builder.build().map_err(|e| e.to_string())?,
            config: Arc::new(config.clone()),
        })
    }

    /// A request with the credentials of the configuration, its files read now.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let request = self.client.request(method, url);
        Ok(match self.config.authorization_header()? {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        })
    }
}
