//! A client: connections shared by URL, topic lookup, partitioned-topic
//! metadata and the topics of a namespace.

use std::collections::HashMap;

use anyhow::Context;
use pulsar::message::proto::{self, base_command::Type, command_lookup_topic_response::LookupType};

use super::connection::{self, Config, Connection};
use super::url::ServiceUrl;

/// Redirects followed by one lookup.
const MAX_REDIRECTS: usize = 20;

/// A Pulsar client on one service URL.
pub struct Client {
    config: Config,
    service_url: String,
    tls: bool,
    pool: tokio::sync::Mutex<HashMap<(String, Option<String>), Connection>>,
}

impl Client {
    /// A client of the cluster at `service_url`; it connects on first use.
    pub fn new(service_url: &str, config: Config) -> anyhow::Result<Client> {
        let tls = ServiceUrl::parse(service_url)?.tls;
        Ok(Client {
            config,
            service_url: service_url.to_string(),
            tls,
            pool: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The open connection to `url` (through the service URL when
    /// `proxy_to` names the broker behind a proxy), or a new one.
    pub async fn connection(&self, url: &str, proxy_to: Option<&str>) -> anyhow::Result<Connection> {
        let key = (url.to_string(), proxy_to.map(str::to_string));
        let mut pool = self.pool.lock().await;
        if let Some(c) = pool.get(&key)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let c = connection::connect(&self.config, url, proxy_to)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        pool.insert(key, c.clone());
        Ok(c)
    }

    /// A connection to the service URL.
    pub async fn service(&self) -> anyhow::Result<Connection> {
        self.connection(&self.service_url, None).await
    }

    /// A connection to the broker that serves `topic`.
    pub async fn lookup(&self, topic: &str) -> anyhow::Result<Connection> {
        let mut connection = self.service().await?;
        let mut authoritative = false;
        for _ in 0..MAX_REDIRECTS {
            let reply = connection
                .request(Type::Lookup, |c, request_id| {
                    c.lookup_topic = Some(proto::CommandLookupTopic {
                        topic: topic.to_string(),
                        request_id,
                        authoritative: Some(authoritative),
                        ..Default::default()
                    })
                })
                .await
                .with_context(|| format!("lookup of {topic}"))?;
            let r = reply
                .lookup_topic_response
                .context("a lookup answered without a lookup response")?;
            let url = if self.tls {
                r.broker_service_url_tls.clone().or(r.broker_service_url.clone())
            } else {
                r.broker_service_url.clone()
            };
            let kind = LookupType::try_from(r.response.unwrap_or(LookupType::Connect as i32));
            if matches!(kind, Ok(LookupType::Failed)) || kind.is_err() {
                anyhow::bail!(
                    "lookup of {topic} failed: {} ({:?})",
                    r.message.unwrap_or_default(),
                    r.error.and_then(|e| proto::ServerError::try_from(e).ok())
                );
            }
            let url = url.with_context(|| format!("the lookup of {topic} names no broker"))?;
            connection = if r.proxy_through_service_url == Some(true) {
                let behind = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                self.connection(&self.service_url, Some(behind)).await?
            } else {
                self.connection(&url, None).await?
            };
            if matches!(kind, Ok(LookupType::Connect)) {
                return Ok(connection);
            }
            authoritative = r.authoritative.unwrap_or(false);
        }
        anyhow::bail!("the lookup of {topic} was redirected more than {MAX_REDIRECTS} times")
    }

    /// The number of partitions of `topic` (0: not partitioned).
    pub async fn partitions(&self, topic: &str) -> anyhow::Result<u32> {
        let reply = self
            .service()
            .await?
            .request(Type::PartitionedMetadata, |c, request_id| {
                c.partition_metadata = Some(proto::CommandPartitionedTopicMetadata {
                    topic: topic.to_string(),
                    request_id,
                    ..Default::default()
                })
            })
            .await
            .with_context(|| format!("the partitions of {topic}"))?;
        let r = reply
            .partition_metadata_response
            .context("no partitioned-topic metadata in the answer")?;
        if r.response == Some(proto::command_partitioned_topic_metadata_response::LookupType::Failed as i32) {
            anyhow::bail!("the partitions of {topic}: {}", r.message.unwrap_or_default());
        }
        Ok(r.partitions.unwrap_or(0))
    }

    /// The persistent topics of `namespace` (`tenant/namespace`), partitions
    /// named one by one.
    pub async fn topics_of_namespace(&self, namespace: &str) -> anyhow::Result<Vec<String>> {
        let reply = self
            .service()
            .await?
            .request(Type::GetTopicsOfNamespace, |c, request_id| {
                c.get_topics_of_namespace = Some(proto::CommandGetTopicsOfNamespace {
                    request_id,
                    namespace: namespace.to_string(),
                    mode: Some(proto::command_get_topics_of_namespace::Mode::Persistent as i32),
                    ..Default::default()
                })
            })
            .await
            .with_context(|| format!("the topics of {namespace}"))?;
        Ok(reply
            .get_topics_of_namespace_response
            .map(|r| r.topics)
            .unwrap_or_default())
    }
}
