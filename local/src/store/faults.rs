//! A test seam for storage faults: the database file behind a backend that
//! fails every write, resize and sync with "no space left on device" while a
//! marker file exists in the data directory.
//!
//! Only active when the environment variable [`FAULTS_ENV`] is set (the tests
//! that drive the real binary set it); otherwise the store uses redb's own
//! file backend untouched.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::path::PathBuf;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Set to enable the seam.
pub const FAULTS_ENV: &str = "TIMELINE_STORAGE_FAULTS";
/// While this file exists in the data directory, writes fail.
pub const FAIL_MARKER: &str = "FAIL_WRITES";

/// The file backend, failing writes while the marker exists.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    marker: PathBuf,
}

impl FaultyBackend {
    /// Wraps `file`; writes fail while `marker` exists.
    pub fn new(file: File, marker: PathBuf) -> Result<Self, redb::DatabaseError> {
        Ok(FaultyBackend {
            inner: FileBackend::new(file)?,
            marker,
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.marker.exists() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
