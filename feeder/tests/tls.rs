//! The feeder over TLS to a broker whose certificate a private CA signed.

mod support;

use std::process::Command;

use pulsar::producer::ProducerOptions;
use pulsar_test_broker::Broker;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{Feeder, assert_stored, cirr, start_server, wait_until};

/// A private CA and a certificate it signed for `localhost`: (CA PEM,
/// server certificate PEM, server key PEM).
fn private_ca() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "feeder test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
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

/// Options the Pulsar client cannot honour are refused at start, with the
/// reason, rather than ignored.
#[test]
fn insecure_tls_options_are_refused_with_the_reason() {
    for args in [
        &["--tls-allow-insecure"][..],
        &["--tls-hostname-verification", "off"][..],
        &["--tls-trust-certs", "/nonexistent/ca.pem"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let base = start_server(dir.path());
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
