//! pulsar-lite (PyPI), an independent Pulsar-protocol broker, with a
//! loopback shim that adds the frame checksum pulsar-lite leaves out (pulsar-rs
//! refuses payload frames without it) and points topic lookups at the shim.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use pulsar::message::proto::{BaseCommand, base_command::Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const MAGIC: [u8; 2] = [0x0e, 0x01];

/// A running pulsar-lite broker; stopped when dropped.
pub struct PulsarLite {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The pulsar-lite binary shipped in the installed wheel.
pub fn binary() -> std::path::PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, pulsar_lite; print(os.path.dirname(pulsar_lite.__file__))",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pulsar-lite is not installed: `pip install pulsar-lite pulsar-client` (scripts/test.sh does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Path::new(String::from_utf8(out.stdout).unwrap().trim()).join("bin/pulsar-lite")
}

impl PulsarLite {
    /// Starts pulsar-lite on a free port with its data in `dir`.
    pub fn start(dir: &Path) -> PulsarLite {
        let port = TcpListener_free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = dir.join("pulsar-lite.toml");
        std::fs::write(&config, "[metrics]\nenabled = false\n").unwrap();
        let child = Command::new(binary())
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--db-path")
            .arg(dir.join("db"))
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulsar-lite");
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "pulsar-lite did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PulsarLite { child, addr }
    }
}

impl Drop for PulsarLite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(non_snake_case)]
fn TcpListener_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the shim in front of `upstream`; returns its address.
pub async fn checksum_shim(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(broker) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut broker_read, mut broker_write) = broker.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut broker_write).await;
                });
                let url = format!("pulsar://{addr}");
                loop {
                    let mut size = [0u8; 4];
                    if broker_read.read_exact(&mut size).await.is_err() {
                        break;
                    }
                    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
                    if broker_read.read_exact(&mut frame).await.is_err() {
                        break;
                    }
                    let out = fix_frame(&frame, &url);
                    if client_write.write_all(&out).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    addr
}

/// One broker frame (without its size prefix), made acceptable to pulsar-rs.
fn fix_frame(frame: &[u8], url: &str) -> Vec<u8> {
    let command_size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    let mut command_bytes = frame[4..4 + command_size].to_vec();
    let rest = &frame[4 + command_size..];
    if let Ok(mut command) = BaseCommand::decode(command_bytes.as_slice())
        && command.r#type == Type::LookupResponse as i32
        && let Some(lookup) = command.lookup_topic_response.as_mut()
    {
        lookup.broker_service_url = Some(url.to_string());
        lookup.proxy_through_service_url = Some(false);
        command_bytes = command.encode_to_vec();
    }
    let mut body = Vec::with_capacity(frame.len() + 6);
    body.extend_from_slice(&(command_bytes.len() as u32).to_be_bytes());
    body.extend_from_slice(&command_bytes);
    if !rest.is_empty() {
        if rest.starts_with(&MAGIC) {
            body.extend_from_slice(rest);
        } else {
            body.extend_from_slice(&MAGIC);
            body.extend_from_slice(&CRC32C.checksum(rest).to_be_bytes());
            body.extend_from_slice(rest);
        }
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Publishes `lines` to `topic` with the official Python client, in order,
/// keyed by `session_id`, without batching.
pub fn python_produce(addr: SocketAddr, topic: &str, lines: &[String]) {
    python_produce_with(addr, topic, lines, "NONE", false);
}

/// Publishes `lines` to `topic` with the official Python client, in order,
/// keyed by `session_id`, compressed with `compression` (a
/// `pulsar.CompressionType`: `LZ4`, `ZLib`, `ZSTD`, `SNAPPY` or `NONE`), in
/// batches or not.
pub fn python_produce_with(addr: SocketAddr, topic: &str, lines: &[String], compression: &str, batching: bool) {
    let script = r#"
import json, sys, pulsar
client = pulsar.Client(sys.argv[1])
producer = client.create_producer(
    sys.argv[2],
    batching_enabled=sys.argv[4] == "batch",
    batching_max_messages=25,
    batching_max_publish_delay_ms=5,
    compression_type=getattr(pulsar.CompressionType, sys.argv[3]),
    block_if_queue_full=True,
)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        key = json.loads(line).get("session_id")
    except Exception:
        key = None
    if key:
        producer.send_async(line.encode(), None, partition_key=key)
    else:
        producer.send_async(line.encode(), None)
producer.flush()
client.close()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &format!("pulsar://{addr}"), topic, compression])
        .arg(if batching { "batch" } else { "single" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
