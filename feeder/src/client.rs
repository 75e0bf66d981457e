//! The Pulsar client of the options: service URL, TLS and authentication.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pulsar::authentication::Authentication;
use pulsar::error::AuthenticationError;

use crate::options::{OnOff, Options, PulsarSecurity};
use crate::wire::auth::Auth;
use crate::wire::client::Client;
use crate::wire::connection::Config;
use crate::wire::tls::{TlsOptions, client_config};
use crate::wire::url::ServiceUrl;

/// Checks the connection options once, at start: what cannot work (a bad
/// URL, an unreadable certificate, key or token file) is refused with the
/// reason.
pub fn check(options: &Options) -> anyhow::Result<()> {
    config(options).map(|_| ())
}

/// The TLS options of `options`.
pub fn tls_options(options: &PulsarSecurity) -> TlsOptions {
    TlsOptions {
        trust_certs: options.tls_trust_certs.clone(),
        allow_insecure: options.tls_allow_insecure,
        hostname_verification: options.tls_hostname_verification == OnOff::On,
        cert_file: options.tls_cert_file.clone(),
        key_file: options.tls_key_file.clone(),
    }
}

/// The connection settings of `options`.
pub fn config(options: &Options) -> anyhow::Result<Config> {
    ServiceUrl::parse(&options.service_url).map_err(|e| anyhow::anyhow!("--service-url: {e}"))?;
    security_config(&options.security)
}

/// The connection settings of `options` (TLS and authentication).
pub fn security_config(options: &PulsarSecurity) -> anyhow::Result<Config> {
    let tls = client_config(&tls_options(options))?;
    if let Some(path) = &options.pulsar_token_file {
        read_token(path).map_err(|e| anyhow::anyhow!(e))?;
    }
    let provider: Option<Box<dyn Authentication>> = if let Some(token) = &options.pulsar_token {
        Some(Box::new(Token(token.clone().into_bytes())))
    } else if let Some(path) = &options.pulsar_token_file {
        Some(Box::new(TokenFile(path.clone())))
    } else if let (Some(issuer_url), Some(credentials_url)) =
        (&options.oauth2_issuer_url, &options.oauth2_credentials_url)
    {
        Some(
            pulsar::authentication::oauth2::OAuth2Authentication::client_credentials(
                pulsar::authentication::oauth2::OAuth2Params {
                    issuer_url: issuer_url.clone(),
                    credentials_url: credentials_url.clone(),
                    audience: options.oauth2_audience.clone(),
                    scope: options.oauth2_scope.clone(),
                },
            ),
        )
    } else {
        None
    };
    Ok(Config {
        tls: Some(tls),
        auth: provider.map(|p| Arc::new(Auth::new(p))),
    })
}

/// The client of `options`.
pub fn client(options: &Options) -> anyhow::Result<Arc<Client>> {
    Ok(Arc::new(Client::new(&options.service_url, config(options)?)?))
}

fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the Pulsar token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the Pulsar token file {} is empty", path.display()));
    }
    Ok(token.as_bytes().to_vec())
}

/// A fixed token.
struct Token(Vec<u8>);

#[async_trait::async_trait]
impl Authentication for Token {
    fn auth_method_name(&self) -> String {
        "token".into()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        Ok(self.0.clone())
    }
}

/// Token authentication that reads its file each time the broker asks.
struct TokenFile(PathBuf);

#[async_trait::async_trait]
impl Authentication for TokenFile {
    fn auth_method_name(&self) -> String {
        "token".into()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        read_token(&self.0).map_err(AuthenticationError::Retriable)
    }
}
