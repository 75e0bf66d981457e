//! The `feeder` command: options, logs, metrics, and the run.

use std::process::ExitCode;
use std::sync::Arc;

use crate::metrics::{self, Metrics};
use crate::options::{Command, LogFormat, Options, StreamTopics};
use crate::pipeline::{Pipeline, Settings, refresh_routes};
use crate::routes::Routes;
use crate::source;
use crate::target::{Delivery, Target};
use clap::Parser;
use tokio::sync::{Notify, watch};

/// Runs `feeder` with the process's arguments; the exit code is 0 when done,
/// 1 on a fatal error, 3 when a file had lines that could not be delivered.
pub fn main() -> ExitCode {
    let options = Options::parse();
    let log_format = match &options.command {
        Some(Command::Sink(sink)) => sink.log_format,
        None => options.log_format,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pulsar=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = match options.command.clone() {
        Some(Command::Sink(sink)) => runtime.block_on(crate::sink::run(sink, shutdown_signal())),
        None => runtime.block_on(run(options)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("feeder: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new();
    if let Some(addr) = options.metrics_addr.0 {
        let bound = metrics::serve(addr, metrics.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e} (use --metrics-addr)"))?;
        tracing::info!("metrics at http://{bound}/metrics");
    }
    let target = Target::new(
        &options.target,
        options.target_token.clone(),
        options.max_backoff,
        metrics.clone(),
    )?;
    let health = wait_for_target(&target).await;
    let bulk = match options.delivery {
        Delivery::Bulk => true,
        Delivery::Worker => false,
        Delivery::Auto => health.local,
    };
    let key_field = options
        .key_field
        .clone()
        .or(health.key_field.clone())
        .unwrap_or_else(|| timeline::event::DEFAULT_KEY_FIELD.to_string());
    if let Some(runtime_field) = &health.key_field
        && *runtime_field != key_field
    {
        anyhow::bail!("--key-field `{key_field}` differs from the runtime's key field `{runtime_field}`");
    }
    let streams = if options.from_file.is_some() {
        vec![StreamTopics {
            stream: options.stream.clone(),
            topics: Vec::new(),
            pattern: None,
        }]
    } else {
        options.streams()
    };
    check_topics(&streams)?;
    if options.from_file.is_none() {
        crate::client::check(&options)?;
    }
    tracing::info!(
        target = %options.target,
        delivery = if bulk { "bulk" } else { "worker" },
        streams = ?streams.iter().map(|s| s.stream.as_str()).collect::<Vec<_>>(),
        %key_field,
        "delivering"
    );
    let (routes_tx, routes) = watch::channel(Routes::default());
    let refresh = Arc::new(Notify::new());
    tokio::spawn(refresh_routes(
        target.clone(),
        routes_tx,
        options.refresh,
        refresh.clone(),
        metrics.clone(),
        health.local,
    ));
    let settings = Settings {
        batch_size: options.batch_size as usize,
        linger: options.linger,
        concurrency: options.concurrency,
        in_flight: options.in_flight as usize,
        bulk,
    };
    let pipeline = |stream: &str| Pipeline {
        stream: stream.to_string(),
        fallback: (stream == timeline::stream::DEFAULT_STREAM).then(|| timeline::StreamSpec::new(stream, &key_field)),
        target: target.clone(),
        routes: routes.clone(),
        refresh: refresh.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
    };
    let summary = match &options.from_file {
        Some(path) => source::run_file(path, pipeline(&options.stream), options.batch_size as usize).await?,
        None => {
            let pipelines = streams
                .into_iter()
                .map(|s| {
                    let p = pipeline(&s.stream);
                    (s, p)
                })
                .collect();
            source::run_pulsar(&options, pipelines, metrics, shutdown_signal()).await?
        }
    };
    tracing::info!(
        consumed = summary.consumed,
        delivered = summary.delivered,
        dead_lettered = summary.dead_lettered,
        "done"
    );
    Ok(if options.from_file.is_some() && summary.dead_lettered > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A topic feeds one stream only: its events cannot have two key fields.
fn check_topics(streams: &[StreamTopics]) -> anyhow::Result<()> {
    let mut owner: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for s in streams {
        for topic in s.full_topics() {
            if let Some(other) = owner.insert(topic.clone(), &s.stream)
                && other != s.stream
            {
                anyhow::bail!(
                    "topic `{topic}` is given for stream `{other}` and for stream `{}`",
                    s.stream
                );
            }
        }
    }
    Ok(())
}

/// Waits until the runtime answers, so that a feeder started before its
/// runtime does not fail.
async fn wait_for_target(target: &Target) -> crate::target::Health {
    let mut told = false;
    loop {
        match target.health().await {
            Ok(h) => return h,
            Err(e) => {
                if !told {
                    tracing::warn!(error = %e, "the runtime does not answer yet; waiting");
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
