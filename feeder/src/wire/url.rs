//! Pulsar service and broker URLs.

/// A Pulsar service or broker URL: `pulsar://host:port[,host:port]` or
/// `pulsar+ssl://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its hosts and ports.
    pub hosts: Vec<(String, u16)>,
}

impl ServiceUrl {
    /// Parses `url`; ports default to 6650, or 6651 with TLS.
    pub fn parse(url: &str) -> anyhow::Result<ServiceUrl> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("pulsar+ssl://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("pulsar://") {
            (false, rest)
        } else {
            anyhow::bail!("`{url}` is not a pulsar:// or pulsar+ssl:// URL");
        };
        let rest = rest.trim_end_matches('/');
        let mut hosts = Vec::new();
        for host in rest.split(',') {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) => match port.parse() {
                    Ok(port) if !name.is_empty() => (name.to_string(), port),
                    _ => anyhow::bail!("`{url}`: `{host}` is not HOST:PORT"),
                },
                _ => (host.to_string(), if tls { 6651 } else { 6650 }),
            };
            if name.is_empty() {
                anyhow::bail!("`{url}` names no host");
            }
            hosts.push((name, port));
        }
        Ok(ServiceUrl { tls, hosts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        let u = ServiceUrl::parse("pulsar+ssl://a.example:7000,b.example/").unwrap();
        assert!(u.tls);
        assert_eq!(
            u.hosts,
            [("a.example".to_string(), 7000), ("b.example".to_string(), 6651)]
        );
        let u = ServiceUrl::parse("pulsar://127.0.0.1:6650").unwrap();
        assert_eq!((u.tls, u.hosts), (false, vec![("127.0.0.1".to_string(), 6650)]));
        assert!(ServiceUrl::parse("http://x").is_err());
        assert!(ServiceUrl::parse("pulsar://x:port").is_err());
        assert!(ServiceUrl::parse("pulsar://").is_err());
    }
}
