//! The feeder over TLS to a broker whose certificate a private CA signed:
//! the trust file, host name verification on and off, no verification,
//! and client certificates (mutual TLS).

mod support;

use std::process::Command;

use pulsar::producer::ProducerOptions;
use pulsar_test_broker::Broker;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{Feeder, assert_stored, cirr, start_server, wait_until};

/// A private CA and a certificate it signed for `localhost`: (CA PEM,
/// server certificate PEM, server key PEM).
fn private_ca() -> (String, String, String) {
    let ca = Ca::new("feeder test CA");
    let (cert, key) = ca.sign("localhost");
    (ca.cert.pem(), cert, key)
}

/// A certificate authority made for the test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `name` and its key, as PEM.
    fn sign(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Stores `lines` on `topic` as a producer would (the broker's TLS may
/// ask for what pulsar-rs cannot present).
fn inject(broker: &Broker, topic: &str, lines: &[String]) {
    for line in lines {
        let metadata = pulsar::message::proto::MessageMetadata {
            producer_name: "test".into(),
            publish_time: 1,
            ..Default::default()
        };
        broker.inject(topic, metadata, line.clone().into_bytes());
    }
}

/// Whether a feeder started with `args` delivers every event of `lines`
/// (published to `topic`) within 60 s; a feeder that cannot connect is
/// given 3 s to show it does not subscribe.
fn delivers(broker: &Broker, base: &str, topic: &str, subscription: &str, args: &[&str]) -> bool {
    let mut all = vec!["--subscription", subscription];
    all.extend_from_slice(args);
    let feeder = Feeder::start(&broker.url(), topic, base, &all);
    std::thread::sleep(std::time::Duration::from_secs(3));
    if broker.consumers(topic, subscription).is_empty() {
        return false;
    }
    wait_until(
        "every message to be acknowledged",
        60,
        || broker.backlog(topic, subscription) == 0,
        || feeder.log(),
    );
    true
}

async fn produce_tls(broker: &Broker, ca: &str, topic: &str, lines: &[String]) {
    let pulsar = pulsar::Pulsar::builder(broker.url(), pulsar::TokioExecutor)
        .with_certificate_chain(ca.as_bytes().to_vec())
        .build()
        .await
        .expect("connect over TLS");
    let mut producer = pulsar
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions::default())
        .build()
        .await
        .expect("producer");
    for line in lines {
        producer
            .send_non_blocking(line.clone().into_bytes())
            .await
            .expect("send")
            .await
            .expect("receipt");
    }
}

/// With `--tls-trust-certs` naming the private CA, every event arrives over
/// `pulsar+ssl://`; without it the broker's certificate is refused and
/// nothing is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_needs_the_trust_file() {
    let (ca, cert, key) = private_ca();
    let broker = Broker::start_tls(&cert, &key).await.unwrap();
    assert!(broker.url().starts_with("pulsar+ssl://localhost:"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let base = start_server(&dir.path().join("data"));
    let lines = cirr(5, 9, "");
    produce_tls(&broker, &ca, "secure", &lines).await;

    let untrusting = Feeder::start(&broker.url(), "secure", &base, &["--subscription", "untrusting"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        broker.consumers("secure", "untrusting").is_empty(),
        "subscribed without trusting the CA:\n{}",
        untrusting.log()
    );
    drop(untrusting);

    let feeder = Feeder::start(
        &broker.url(),
        "secure",
        &base,
        &["--tls-trust-certs", ca_file.to_str().unwrap()],
    );
    wait_until(
        "every message to be acknowledged",
        60,
        || broker.backlog("secure", "timeline-feeder") == 0,
        || feeder.log(),
    );
    assert_stored(&base, &lines, "over TLS");
}

/// Mutual TLS: a broker that requires a client certificate signed by its
/// client CA takes the feeder's `--tls-cert-file` and `--tls-key-file`,
/// and refuses a feeder without them (or with one another CA signed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger = Ca::new("another CA");
    let (cert, key) = server_ca.sign("localhost");
    let broker = Broker::start_mtls(&cert, &key, &client_ca.cert.pem()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let ca_file = write("ca.pem", &server_ca.cert.pem());
    let (client_cert, client_key) = client_ca.sign("feeder");
    let (cert_file, key_file) = (write("client.pem", &client_cert), write("client.key", &client_key));
    let (other_cert, other_key) = stranger.sign("feeder");
    let (other_cert, other_key) = (write("other.pem", &other_cert), write("other.key", &other_key));
    let base = start_server(&dir.path().join("data"));
    let lines = cirr(5, 31, "");
    inject(&broker, "mutual", &lines);
    assert!(
        !delivers(&broker, &base, "mutual", "anonymous", &["--tls-trust-certs", &ca_file]),
        "subscribed without a client certificate"
    );
    let args = [
        "--tls-trust-certs",
        &ca_file,
        "--tls-cert-file",
        &other_cert,
        "--tls-key-file",
        &other_key,
    ];
    assert!(
        !delivers(&broker, &base, "mutual", "stranger", &args),
        "subscribed with a stranger's certificate"
    );
    let args = [
        "--tls-trust-certs",
        &ca_file,
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
    ];
    assert!(delivers(&broker, &base, "mutual", "timeline-feeder", &args));
    assert_stored(&base, &lines, "over mutual TLS");
}

/// A broker whose certificate names another host: refused while host names
/// are verified, accepted with `--tls-hostname-verification off` (the CA
/// still trusted) and with `--tls-allow-insecure` (no trust file at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_verification_off_and_insecure_tls() {
    let ca = Ca::new("feeder test CA");
    let (cert, key) = ca.sign("broker.example");
    let broker = Broker::start_tls(&cert, &key).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let base = start_server(&dir.path().join("data"));
    let lines = cirr(4, 32, "");
    inject(&broker, "names", &lines);
    assert!(!delivers(
        &broker,
        &base,
        "names",
        "verified",
        &["--tls-trust-certs", ca_file]
    ));
    let off = ["--tls-trust-certs", ca_file, "--tls-hostname-verification", "off"];
    assert!(delivers(&broker, &base, "names", "hostname-off", &off));
    assert_stored(&base, &lines, "without host name verification");
    assert!(delivers(&broker, &base, "names", "insecure", &["--tls-allow-insecure"]));
    let other = Ca::new("not trusted");
    let (cert, key) = other.sign("localhost");
    let untrusted = Broker::start_tls(&cert, &key).await.unwrap();
    inject(&untrusted, "names", &lines);
    assert!(
        !delivers(&untrusted, &base, "names", "off-but-untrusted", &off),
        "host name verification off still needs a trusted CA"
    );
}

/// Files that cannot be used are refused at start, with the option's name.
#[test]
fn unusable_tls_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    for (i, args) in [
        &["--tls-trust-certs", "/nonexistent/ca.pem"][..],
        &["--tls-trust-certs", not_pem][..],
        &["--tls-cert-file", not_pem, "--tls-key-file", not_pem][..],
    ]
    .into_iter()
    .enumerate()
    {
        let base = start_server(&dir.path().join(format!("data-{i}")));
        let out = Command::new(env!("CARGO_BIN_EXE_feeder"))
            .args([
                "--service-url",
                "pulsar+ssl://localhost:1",
                "--topic",
                "t",
                "--target",
                &base,
            ])
            .args(["--metrics-addr", "off"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}
