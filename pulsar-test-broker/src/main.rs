//! `pulsar-test-broker`: runs the in-memory Pulsar-protocol test broker, for
//! trying the feeder by hand without a Pulsar cluster.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6650".into())
        .parse()
        .map_err(|e| anyhow::anyhow!("usage: pulsar-test-broker [ADDR:PORT] ({e})"))?;
    let broker = pulsar_test_broker::Broker::bind(addr).await?;
    eprintln!(
        "pulsar-test-broker listening on {} (in memory; Ctrl-C stops it)",
        broker.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
