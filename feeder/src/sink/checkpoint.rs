//! The sink's checkpoint: the last change the target acknowledged and, for
//! a webhook, the batch in flight (written before it is sent), in one small
//! JSON file replaced atomically (temporary file, fsync, rename, fsync of the
//! directory): a crash leaves the old or the new one, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The format version written.
const VERSION: u32 = 1;

/// What the checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// The job whose changes are sunk.
    pub job: String,
    /// Where they go (`pulsar:<topic>` or `webhook:<url>`).
    pub target: String,
    /// Every change up to this id is acknowledged by the target (or was
    /// left out by `--where`): the stream resumes after it.
    pub acked: u64,
    /// A webhook batch written ahead of its request: after a crash it is
    /// sent again, the same changes with the same idempotency key, before
    /// anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
}

/// A batch sent to a webhook and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The batch holds the changes after this id...
    pub after: u64,
    /// ...up to this one (its last).
    pub last: u64,
    /// Where the stream goes on once it is acknowledged (the server's
    /// `next`, at least `last`).
    pub next: u64,
    /// The `where` filter it was read with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Its idempotency key.
    pub key: String,
}

/// The checkpoint file and what it holds.
#[derive(Debug)]
pub struct CheckpointFile {
    path: PathBuf,
    /// The state last written (or read).
    pub state: Checkpoint,
}

impl CheckpointFile {
    /// Reads the checkpoint at `path`, or starts a new one (at change 0) if
    /// there is no file. A checkpoint of another job or target is refused:
    /// its position means nothing here.
    pub fn open(path: &Path, job: &str, target: &str) -> anyhow::Result<CheckpointFile> {
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                let state: Checkpoint = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "the checkpoint {} is not readable; remove it to start from the job's first change",
                        path.display()
                    )
                })?;
                if state.version != VERSION {
                    anyhow::bail!(
                        "the checkpoint {} has format version {}, this sink writes {VERSION}",
                        path.display(),
                        state.version
                    );
                }
                if state.job != job || state.target != target {
                    anyhow::bail!(
                        "the checkpoint {} is for job `{}` to {}, not job `{job}` to {target}; give another --checkpoint",
                        path.display(),
                        state.job,
                        state.target
                    );
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint {
                version: VERSION,
                job: job.to_string(),
                target: target.to_string(),
                acked: 0,
                in_flight: None,
            },
            Err(e) => return Err(e).with_context(|| format!("cannot read the checkpoint {}", path.display())),
        };
        Ok(CheckpointFile {
            path: path.to_path_buf(),
            state,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `state` durably and keeps it as the current state.
    pub fn save(&mut self, state: Checkpoint) -> anyhow::Result<()> {
        write_atomically(&self.path, &serde_json::to_vec(&state)?)
            .with_context(|| format!("cannot write the checkpoint {}", self.path.display()))?;
        self.state = state;
        Ok(())
    }

    /// Records that everything up to `acked` is acknowledged, with nothing
    /// in flight (no write if that is already so).
    pub fn ack(&mut self, acked: u64) -> anyhow::Result<()> {
        if self.state.acked == acked && self.state.in_flight.is_none() {
            return Ok(());
        }
        let state = Checkpoint {
            acked,
            in_flight: None,
            ..self.state.clone()
        };
        self.save(state)
    }

    /// Records the batch about to be sent, before it is.
    pub fn write_ahead(&mut self, batch: InFlight) -> anyhow::Result<()> {
        let state = Checkpoint {
            in_flight: Some(batch),
            ..self.state.clone()
        };
        self.save(state)
    }
}

/// Replaces `path` with `bytes`: a temporary file next to it, fsynced, then
/// renamed over it, then the directory fsynced (so the rename survives a
/// power loss).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.checkpoint");
        let mut c = CheckpointFile::open(&path, "alerts", "pulsar:t").unwrap();
        assert_eq!(c.state.acked, 0);
        assert!(!path.exists(), "nothing is written before the first change");
        c.ack(0).unwrap();
        assert!(!path.exists(), "no change, no write");
        c.write_ahead(InFlight {
            after: 0,
            last: 7,
            next: 9,
            filter: Some("new".into()),
            key: "k".into(),
        })
        .unwrap();
        let again = CheckpointFile::open(&path, "alerts", "pulsar:t").unwrap();
        assert_eq!(again.state, c.state);
        assert_eq!(again.state.in_flight.as_ref().unwrap().last, 7);
        c.ack(9).unwrap();
        let again = CheckpointFile::open(&path, "alerts", "pulsar:t").unwrap();
        assert_eq!((again.state.acked, again.state.in_flight), (9, None));
        assert!(
            !dir.path().join(".c.checkpoint.tmp").exists(),
            "the temporary file was renamed"
        );
        let e = CheckpointFile::open(&path, "other", "pulsar:t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is for job `alerts` to pulsar:t"), "{e}");
        let e = CheckpointFile::open(&path, "alerts", "webhook:x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not job `alerts` to webhook:x"), "{e}");
        std::fs::write(&path, b"{\"acked\":").unwrap();
        let e = format!("{:#}", CheckpointFile::open(&path, "alerts", "pulsar:t").unwrap_err());
        assert!(e.contains("is not readable; remove it"), "{e}");
    }
}
