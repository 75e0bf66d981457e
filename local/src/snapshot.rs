//! Snapshots of the engine's worker state, so that recovery reads the newest
//! snapshot and replays only the log's tail.
//!
//! A snapshot is one file in the data directory: a magic number, a CRC-32 of
//! the rest, then (postcard) the format version, the number of log records
//! it covers, the jobs it was taken with, a fingerprint canary and the
//! engine's image. It is written to a temporary file, fsynced, and renamed
//! over the previous one, so a crash leaves the old snapshot or the new one.
//! A snapshot that is unreadable, of another version, or taken with other
//! jobs is not used: recovery replays the whole log instead.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineImage, Target, fingerprint};
use crate::store::StoredJob;

/// The snapshot's file name in the data directory.
pub const FILE: &str = "snapshot.bin";
const MAGIC: &[u8; 8] = b"TLSNAP\r\n";
/// Bumped when the image's layout changes.
const VERSION: u32 = 3;

/// When the writer takes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// After this many events applied since the last one (0: never by count).
    pub every_events: u64,
    /// After this many seconds, if events arrived since the last one (0:
    /// never by time).
    pub every_secs: u64,
}

impl SnapshotPolicy {
    /// No snapshots.
    pub const OFF: SnapshotPolicy = SnapshotPolicy {
        every_events: 0,
        every_secs: 0,
    };

    /// Whether snapshots are taken at all.
    pub fn enabled(&self) -> bool {
        self.every_events > 0 || self.every_secs > 0
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_events: 1_000_000,
            every_secs: 300,
        }
    }
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Log records `0..records` are in the image.
    records: u64,
    /// The jobs it was taken with, sorted by name.
    jobs: Vec<StoredJob>,
    /// The fingerprint of a fixed event: a build that fingerprints otherwise
    /// cannot use the image's repeat fingerprints.
    canary: u64,
    image: EngineImage,
}

/// A snapshot read back: the state and how many log records it covers.
pub struct Loaded {
    /// Log records `0..records` are in the image.
    pub records: u64,
    /// The engine's state.
    pub image: EngineImage,
}

fn canary() -> u64 {
    let event = timeline::Event {
        key: "canary".into(),
        time: 1,
        id: Some("canary".into()),
        columns: vec![("c".into(), timeline::Value::Int(1))],
    };
    // Repeat fingerprints and the ledger's identity digests are both kept.
    fingerprint(&event, &Target::AllLeaves).expect("identified") ^ timeline::repeats::identity_digest(1, "canary")
}

fn sorted(mut jobs: Vec<StoredJob>) -> Vec<StoredJob> {
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    jobs
}

/// The snapshot's path in data directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A snapshot captured from the engine, not yet written.
pub struct Captured(Snapshot);

/// Captures the state of `engine`, which holds log records `0..records` and
/// runs `jobs` (a copy: the engine may change while it is written).
pub fn capture(engine: &Engine, records: u64, jobs: Vec<StoredJob>) -> Captured {
    Captured(Snapshot {
        version: VERSION,
        records,
        jobs: sorted(jobs),
        canary: canary(),
        image: engine.image(),
    })
}

impl Captured {
    /// Log records `0..records` are in it.
    pub fn records(&self) -> u64 {
        self.0.records
    }

    /// Writes it to `dir` crash-safely, replacing the previous snapshot;
    /// returns its size in bytes.
    pub fn write(self, dir: &Path) -> Result<u64> {
        let final_path = path(dir);
        let temp = dir.join(format!("{FILE}.tmp"));
        let file = std::fs::File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
        // Encoded straight into the file (no second copy of the state in
        // memory); the checksum's place is filled in once the body is written.
        let mut out = ChecksumWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        out.inner.write_all(MAGIC)?;
        out.inner.write_all(&[0; 4])?;
        let mut out = postcard::to_io(&self.0, out).context("cannot encode the snapshot")?;
        drop(self);
        let (crc, body_len) = (out.crc.clone().finalize(), out.bytes);
        out.inner.flush()?;
        let mut file = out.inner.into_inner().map_err(|e| e.into_error())?;
        file.seek(std::io::SeekFrom::Start(MAGIC.len() as u64))?;
        file.write_all(&crc.to_le_bytes())?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", temp.display()))?;
        drop(file);
        std::fs::rename(&temp, &final_path).with_context(|| format!("cannot rename {}", temp.display()))?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
        Ok(MAGIC.len() as u64 + 4 + body_len)
    }
}

/// Counts and checksums what passes through it.
struct ChecksumWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot of `engine` (see [`capture`]) to `dir` now.
pub fn write(dir: &Path, engine: &Engine, records: u64, jobs: Vec<StoredJob>) -> Result<u64> {
    capture(engine, records, jobs).write(dir)
}

/// The log records the snapshot of `dir` says it covers, read from its
/// first bytes only (not checked: a hint, for reading the log's tail while
/// the snapshot is decoded).
pub fn covered_records(dir: &Path) -> Option<u64> {
    let mut head = [0u8; 64];
    let mut file = std::fs::File::open(path(dir)).ok()?;
    let n = std::io::Read::read(&mut file, &mut head).ok()?;
    let body = head[..n].get(MAGIC.len() + 4..)?;
    let ((version, records), _) = postcard::take_from_bytes::<(u32, u64)>(body).ok()?;
    (version == VERSION).then_some(records)
}

/// Reads the snapshot of `dir`, if there is one and it fits `jobs` and a log
/// of `log_records` records; `Ok(None)` without a snapshot, `Err` (to warn
/// about, then replay everything) for one that cannot be used.
pub fn read(dir: &Path, jobs: Vec<StoredJob>, log_records: u64) -> Result<Option<Loaded>> {
    let path = path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("{} is not a snapshot", path.display());
    }
    let crc = u32::from_le_bytes(bytes[MAGIC.len()..MAGIC.len() + 4].try_into().expect("4 bytes"));
    let body = &bytes[MAGIC.len() + 4..];
    if crc32fast::hash(body) != crc {
        bail!("{} is corrupt (checksum mismatch)", path.display());
    }
    let version: u32 = postcard::take_from_bytes(body).map(|(v, _)| v).unwrap_or(0);
    if version != VERSION {
        bail!(
            "{} has format version {version}, this build reads {VERSION}",
            path.display()
        );
    }
    let snapshot: Snapshot =
        postcard::from_bytes(body).with_context(|| format!("{} cannot be decoded", path.display()))?;
    if snapshot.jobs != sorted(jobs) {
        bail!("the jobs changed since the snapshot");
    }
    if snapshot.canary != canary() {
        bail!("the snapshot was written by a build that fingerprints events otherwise");
    }
    if snapshot.records > log_records {
        bail!(
            "the snapshot covers {} log records, the log holds {log_records}",
            snapshot.records
        );
    }
    Ok(Some(Loaded {
        records: snapshot.records,
        image: snapshot.image,
    }))
}
