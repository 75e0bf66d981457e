//! Authentication through a Pulsar authentication provider (token, token
//! file, OAuth2 client credentials).

use pulsar::authentication::Authentication;

/// Authentication with a Pulsar authentication provider (token, token file,
/// OAuth2), initialized on first use.
pub struct Auth {
    method: String,
    provider: tokio::sync::Mutex<(bool, Box<dyn Authentication>)>,
}

impl Auth {
    /// Authentication through `provider`.
    pub fn new(provider: Box<dyn Authentication>) -> Auth {
        Auth {
            method: provider.auth_method_name(),
            provider: tokio::sync::Mutex::new((false, provider)),
        }
    }

    /// The method's name (`token`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Fresh authentication data.
    pub async fn data(&self) -> anyhow::Result<Vec<u8>> {
        let mut guard = self.provider.lock().await;
        let (initialized, provider) = &mut *guard;
        if !*initialized {
            provider
                .initialize()
                .await
                .map_err(|e| anyhow::anyhow!("authentication: {e}"))?;
            *initialized = true;
        }
        provider
            .auth_data()
            .await
            .map_err(|e| anyhow::anyhow!("authentication: {e}"))
    }
}
