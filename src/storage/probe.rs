//! Works around a glommio trap: the first `DmaFile` a thread opens on a device decides, with a
//! test read at offset 0, whether the device supports polled I/O. If that file is empty the test
//! wrongly passes and every later O_DIRECT read on the thread fails with EOPNOTSUPP. So before
//! any other `DmaFile` on a device, each thread opens a non-empty probe file there.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use glommio::io::DmaFile;

use super::error::{Result, StorageError};

/// Name of the probe file left in the first directory primed on each device.
pub const PROBE_FILE_NAME: &str = ".strata-dma-probe";
/// Size of the probe file: one O_DIRECT block of real data.
const PROBE_BYTES: usize = 4096;

thread_local! {
    /// Devices (st_dev) this thread has primed.
    static PRIMED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Makes sure this thread has opened a non-empty O_DIRECT file on `dir`'s device before any
/// other. Cheap after the first call per device.
pub async fn prime(dir: &Path) -> Result<()> {
    let dev = std::fs::metadata(dir)
        .map_err(|e| StorageError::io("stat", dir, e))?
        .dev();
    if PRIMED.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE_NAME);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if len < PROBE_BYTES as u64 {
        let mut f =
            std::fs::File::create(&path).map_err(|e| StorageError::io("creating", &path, e))?;
        f.write_all(&[0x5a; PROBE_BYTES])
            .map_err(|e| StorageError::io("writing", &path, e))?;
        f.sync_all()
            .map_err(|e| StorageError::io("syncing", &path, e))?;
    }
    let f = DmaFile::open(&path)
        .await
        .map_err(|e| StorageError::io("opening", &path, e))?;
    f.close()
        .await
        .map_err(|e| StorageError::io("closing", &path, e))?;
    PRIMED.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}
