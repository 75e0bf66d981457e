//! The Pulsar client: service URL, TLS and authentication from the options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pulsar::authentication::Authentication;
use pulsar::error::AuthenticationError;
use pulsar::{Pulsar, PulsarBuilder, TokioExecutor};

use crate::options::{OnOff, Options};

/// Checks the TLS and authentication options once, at start: what cannot
/// work is refused with the reason rather than ignored.
pub fn check(options: &Options) -> anyhow::Result<()> {
    if options.tls_allow_insecure {
        anyhow::bail!(
            "--tls-allow-insecure is not supported: the Pulsar client (pulsar-rs, rustls) always verifies the \
             broker's certificate; give the broker's CA with --tls-trust-certs"
        );
    }
    if options.tls_hostname_verification == OnOff::Off {
        anyhow::bail!(
            "--tls-hostname-verification off is not supported: the Pulsar client (pulsar-rs, rustls) always checks \
             that the certificate names the host; connect with a host name the certificate names"
        );
    }
    if let Some(path) = &options.tls_trust_certs {
        read_pem(path)?;
    }
    if let Some(path) = &options.pulsar_token_file {
        read_token(path).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// A client builder with the connection, TLS and authentication options of
/// `options`.
pub fn builder(options: &Options) -> anyhow::Result<PulsarBuilder<TokioExecutor>> {
    let mut builder = Pulsar::builder(options.service_url.clone(), TokioExecutor).with_connection_retry_options(
        pulsar::ConnectionRetryOptions {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_retries: u32::MAX,
            ..Default::default()
        },
    );
    if let Some(path) = &options.tls_trust_certs {
        builder = builder.with_certificate_chain(read_pem(path)?);
    }
    if let Some(token) = &options.pulsar_token {
        builder = builder.with_auth(pulsar::Authentication {
            name: "token".into(),
            data: token.clone().into_bytes(),
        });
    } else if let Some(path) = &options.pulsar_token_file {
        builder = builder.with_auth_provider(Box::new(TokenFile(path.clone())));
    } else if let (Some(issuer_url), Some(credentials_url)) =
        (&options.oauth2_issuer_url, &options.oauth2_credentials_url)
    {
        builder = builder.with_auth_provider(
            pulsar::authentication::oauth2::OAuth2Authentication::client_credentials(
                pulsar::authentication::oauth2::OAuth2Params {
                    issuer_url: issuer_url.clone(),
                    credentials_url: credentials_url.clone(),
                    audience: options.oauth2_audience.clone(),
                    scope: options.oauth2_scope.clone(),
                },
            ),
        );
    }
    Ok(builder)
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read --tls-trust-certs {}", path.display()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("--tls-trust-certs {} holds no PEM certificate", path.display());
    }
    Ok(pem)
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
