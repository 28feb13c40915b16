//! One segment of a partition log: `<base offset, 20 digits>.log` holding whole record batches,
//! with its sparse `.index` and `.timeindex` beside it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};
use tracing::warn;

use super::error::{Result, StorageError};
use super::index::{OffsetIndex, TimeIndex};
use super::tail::{align_down, align_up};
use crate::record::{check_crc, BatchHeader, HEADER_LEN};

/// Bytes read at a time while scanning a segment at recovery.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub fn offset_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

pub fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// The base offset named by a segment file name (`00000000000000000042.log` → 42).
pub fn parse_log_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads `len` bytes at any position `pos` with aligned O_DIRECT reads; fewer at end of file.
pub async fn read_bytes(file: &DmaFile, path: &Path, pos: u64, len: usize) -> Result<Bytes> {
    let start = align_down(pos);
    let end = align_up(pos + len as u64);
    let read = file
        .read_at_aligned(start, (end - start) as usize)
        .await
        .map_err(|e| StorageError::io("reading", path, e))?;
    let skip = (pos - start) as usize;
    if read.len() <= skip {
        return Ok(Bytes::new());
    }
    let take = len.min(read.len() - skip);
    Ok(Bytes::copy_from_slice(&read[skip..skip + take]))
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// At the end of the file.
    EndOfFile,
    /// At zeroed (preallocated or padding) bytes: a clean end.
    Zeros,
    /// At bytes that are not a valid next batch.
    Corrupt(String),
}

/// Index files of a segment. Never fsynced on the hot path: they can be rebuilt from the log.
pub struct IndexFiles {
    offset: BufferedFile,
    offset_path: PathBuf,
    time: BufferedFile,
    time_path: PathBuf,
}

impl IndexFiles {
    async fn open(dir: &Path, base: i64) -> Result<IndexFiles> {
        let offset_path = offset_index_path(dir, base);
        let time_path = time_index_path(dir, base);
        Ok(IndexFiles {
            offset: open_index_file(&offset_path).await?,
            offset_path,
            time: open_index_file(&time_path).await?,
            time_path,
        })
    }
}

async fn open_index_file(path: &Path) -> Result<BufferedFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(|e| StorageError::io("opening index", path, e))
}

/// Index entries captured from a segment, to be written to its files.
pub struct IndexJob {
    /// Base offset of the segment the entries belong to.
    pub base: i64,
    files: Rc<IndexFiles>,
    offset: (u64, Vec<u8>),
    time: (u64, Vec<u8>),
    lens: (usize, usize),
}

impl IndexJob {
    /// Writes the entries and cuts each file after them (dropping entries of a rolled-back
    /// tail). Page cache only.
    pub async fn run(self) -> Result<IndexJob> {
        let f = &self.files;
        let (o_pos, o_bytes) = (self.offset.0, self.offset.1.clone());
        let (t_pos, t_bytes) = (self.time.0, self.time.1.clone());
        let o_end = o_pos + o_bytes.len() as u64;
        let t_end = t_pos + t_bytes.len() as u64;
        if !o_bytes.is_empty() {
            f.offset
                .write_at(o_bytes, o_pos)
                .await
                .map_err(|e| StorageError::io("writing index", &f.offset_path, e))?;
        }
        if !t_bytes.is_empty() {
            f.time
                .write_at(t_bytes, t_pos)
                .await
                .map_err(|e| StorageError::io("writing index", &f.time_path, e))?;
        }
        f.offset
            .truncate(o_end)
            .await
            .map_err(|e| StorageError::io("truncating index", &f.offset_path, e))?;
        f.time
            .truncate(t_end)
            .await
            .map_err(|e| StorageError::io("truncating index", &f.time_path, e))?;
        Ok(self)
    }

    /// Makes both index files durable.
    pub async fn sync(&self) -> Result<()> {
        let f = &self.files;
        f.offset
            .fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing index", &f.offset_path, e))?;
        f.time
            .fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing index", &f.time_path, e))
    }
}

/// A segment of the log. Invariant: the indexes reference only batches in `0..size`, batches
/// in `0..size` hold offsets `base..next_offset` contiguously, and `size <= allocated`.
pub struct Segment {
    pub base: i64,
    pub path: PathBuf,
    pub file: Rc<DmaFile>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes of whole batches (for the active segment: appended, written or not).
    pub size: u64,
    pub next_offset: i64,
    /// Largest batch max-timestamp in the segment (i64::MIN when empty).
    pub max_timestamp: i64,
    /// Log bytes since the last index entry.
    pub bytes_since_index: u64,
    /// File bytes reserved by preallocation.
    pub allocated: u64,
    dir: PathBuf,
    index_files: Rc<IndexFiles>,
}

async fn open_data_file(path: &Path, create_new: bool) -> Result<DmaFile> {
    // `DmaFile::create` opens write-only: segments need read + write.
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if create_new {
        opts.create_new(true);
    }
    let file = opts
        .dma_open(path)
        .await
        .map_err(|e| StorageError::io("opening", path, e))?;
    let align = file.alignment();
    assert!(
        align <= super::tail::BLOCK && super::tail::BLOCK % align == 0,
        "unsupported O_DIRECT alignment {align}"
    );
    Ok(file)
}

impl Segment {
    /// Creates an empty segment file at `base`.
    pub async fn create(dir: &Path, base: i64) -> Result<Segment> {
        let path = log_path(dir, base);
        // Stale index files of an earlier segment with the same base must not be trusted.
        for p in [offset_index_path(dir, base), time_index_path(dir, base)] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io("removing stale index", p, e))
                }
                _ => {}
            }
        }
        let file = open_data_file(&path, true).await?;
        let index_files = IndexFiles::open(dir, base).await?;
        Ok(Segment::new(dir, base, path, file, index_files))
    }

    fn new(
        dir: &Path,
        base: i64,
        path: PathBuf,
        file: DmaFile,
        index_files: IndexFiles,
    ) -> Segment {
        Segment {
            base,
            path,
            file: Rc::new(file),
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            size: 0,
            next_offset: base,
            max_timestamp: i64::MIN,
            bytes_since_index: 0,
            allocated: 0,
            dir: dir.to_path_buf(),
            index_files: Rc::new(index_files),
        }
    }

    /// Opens an existing segment and validates it from its last trustworthy index entry to its
    /// end. Returns the segment, why the scan stopped, and the bytes of its partial last block.
    pub async fn open(
        dir: &Path,
        base: i64,
        index_interval: u32,
    ) -> Result<(Segment, ScanStop, Vec<u8>)> {
        let path = log_path(dir, base);
        let file = open_data_file(&path, false).await?;
        let file_size = file
            .file_size()
            .await
            .map_err(|e| StorageError::io("stat", &path, e))?;
        // Read the index files before opening them for writing (which creates missing ones).
        let indexes = load_index_files(dir, base, &path, file_size);
        let index_files = IndexFiles::open(dir, base).await?;
        let mut seg = Segment::new(dir, base, path, file, index_files);
        seg.allocated = file_size;
        let start = match indexes {
            Some((oi, ti)) => seg.adopt_indexes(oi, ti).await,
            None => None,
        };
        let (from, expected) = match start {
            Some(e) => (u64::from(e.position), base + i64::from(e.rel_offset)),
            None => (0, base),
        };
        if let Some(t) = seg.time_index.last() {
            seg.max_timestamp = t.timestamp;
        }
        // Everything before the scan start is vouched for by the index.
        seg.size = from;
        seg.next_offset = expected;
        let (stop, carry) = seg.scan(from, file_size, index_interval).await?;
        Ok((seg, stop, carry))
    }

    /// Adopts decoded indexes if their last entry points at the batch it claims; returns that
    /// entry (where the scan starts), or `None` to rebuild the indexes from the whole segment.
    async fn adopt_indexes(
        &mut self,
        oi: OffsetIndex,
        mut ti: TimeIndex,
    ) -> Option<super::index::OffsetEntry> {
        let last = oi.last()?;
        let ok =
            match read_bytes(&self.file, &self.path, u64::from(last.position), HEADER_LEN).await {
                Ok(b) => BatchHeader::parse(&b)
                    .map(|h| h.base_offset == self.base + i64::from(last.rel_offset))
                    .unwrap_or(false),
                Err(_) => false,
            };
        if !ok {
            warn!(segment = %self.path.display(), "last index entry does not point at its batch: rebuilding the index");
            return None;
        }
        // Time entries past the scan start are re-derived by the scan.
        ti.truncate_from(last.rel_offset + 1);
        self.time_index = ti;
        self.offset_index = oi;
        Some(last)
    }

    /// Records a batch of `len` bytes at `position` (an append or a scanned batch), adding index
    /// entries every `interval` bytes.
    pub fn note_batch(&mut self, position: u64, header: &BatchHeader, interval: u32) {
        debug_assert_eq!(position, self.size, "batches are contiguous");
        debug_assert_eq!(
            header.base_offset, self.next_offset,
            "offsets are contiguous"
        );
        let len = header.total_len() as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.offset_index.is_empty() || self.bytes_since_index >= u64::from(interval) {
            self.offset_index
                .push(self.rel(header.base_offset), position as u32);
            self.time_index
                .maybe_push(self.max_timestamp, self.rel(header.last_offset()));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.size = position + len;
        self.next_offset = header.next_offset();
    }

    /// Offset relative to the segment base, as stored in the indexes.
    pub fn rel(&self, offset: i64) -> u32 {
        let rel = offset - self.base;
        debug_assert!((0..=i64::from(u32::MAX)).contains(&rel));
        rel as u32
    }

    /// Validates batches from `from` onward (length, CRC, contiguous offsets), indexing them,
    /// until the first byte that is not a valid next batch.
    async fn scan(
        &mut self,
        from: u64,
        file_size: u64,
        interval: u32,
    ) -> Result<(ScanStop, Vec<u8>)> {
        let mut window = Bytes::new();
        let mut window_pos = from;
        let mut pos = from;
        let stop = loop {
            if pos >= file_size {
                break ScanStop::EndOfFile;
            }
            let remaining = file_size - pos;
            if !covers(&window, window_pos, pos, HEADER_LEN.min(remaining as usize)) {
                window = read_bytes(
                    &self.file,
                    &self.path,
                    pos,
                    SCAN_WINDOW_BYTES.min(remaining as usize),
                )
                .await?;
                window_pos = pos;
            }
            let head = &window[(pos - window_pos) as usize..];
            let head = &head[..HEADER_LEN.min(head.len())];
            if head.iter().all(|&b| b == 0) {
                break if head.len() == HEADER_LEN || remaining as usize == head.len() {
                    ScanStop::Zeros
                } else {
                    ScanStop::Corrupt(format!("short read at {pos}"))
                };
            }
            if head.len() < HEADER_LEN {
                break ScanStop::Corrupt(format!(
                    "torn batch header at {pos}: {remaining} bytes left in the file"
                ));
            }
            let header = match BatchHeader::parse(head) {
                Ok(h) => h,
                Err(e) => break ScanStop::Corrupt(format!("at {pos}: {e}")),
            };
            let total = header.total_len();
            if pos + total as u64 > file_size {
                break ScanStop::Corrupt(format!(
                    "batch at {pos} of {total} bytes runs past the end of the file ({file_size})"
                ));
            }
            if header.base_offset != self.next_offset {
                break ScanStop::Corrupt(format!(
                    "batch at {pos} has base offset {}, expected {}",
                    header.base_offset, self.next_offset
                ));
            }
            if header.last_offset() - self.base > i64::from(u32::MAX) {
                break ScanStop::Corrupt(format!(
                    "batch at {pos} overflows the segment's offset range"
                ));
            }
            if !covers(&window, window_pos, pos, total) {
                window = read_bytes(
                    &self.file,
                    &self.path,
                    pos,
                    total.max(SCAN_WINDOW_BYTES.min(remaining as usize)),
                )
                .await?;
                window_pos = pos;
            }
            let at = (pos - window_pos) as usize;
            if let Err(e) = check_crc(&window[at..at + total], &header) {
                break ScanStop::Corrupt(format!(
                    "batch at {pos} (offset {}): {e}",
                    header.base_offset
                ));
            }
            self.note_batch(pos, &header, interval);
            pos += total as u64;
        };
        let block = align_down(pos);
        let carry = if covers(&window, window_pos, block, (pos - block) as usize) {
            let at = (block - window_pos) as usize;
            window[at..at + (pos - block) as usize].to_vec()
        } else {
            read_bytes(&self.file, &self.path, block, (pos - block) as usize)
                .await?
                .to_vec()
        };
        Ok((stop, carry))
    }

    /// Captures the index entries not yet in the files, to be written without holding the
    /// segment across the write.
    pub fn index_job(&self) -> IndexJob {
        IndexJob {
            base: self.base,
            files: self.index_files.clone(),
            offset: self.offset_index.unpersisted(),
            time: self.time_index.unpersisted(),
            lens: (self.offset_index.len(), self.time_index.len()),
        }
    }

    /// True when index entries are waiting to be written to the files.
    pub fn index_dirty(&self) -> bool {
        self.offset_index.has_unpersisted() || self.time_index.has_unpersisted()
    }

    /// Records that a job's entries are in the files.
    pub fn index_persisted(&mut self, job: &IndexJob) {
        debug_assert_eq!(job.base, self.base, "index job applied to another segment");
        self.offset_index.mark_persisted(job.lens.0);
        self.time_index.mark_persisted(job.lens.1);
    }

    /// Adds the time entry for the newest record, so a closed segment's last time entry holds
    /// its largest timestamp.
    pub fn seal_time_index(&mut self) {
        if self.next_offset > self.base {
            let last = self.rel(self.next_offset - 1);
            self.time_index.maybe_push(self.max_timestamp, last);
        }
    }

    /// Bytes since the last index entry, derived from the offset index after a truncation.
    pub fn recount_since_index(&mut self) {
        self.bytes_since_index = match self.offset_index.last() {
            Some(e) => self.size - u64::from(e.position),
            None => 0,
        };
    }

    /// Deletes the segment's files (open handles keep serving reads until dropped).
    pub fn remove_files(&self) -> Result<()> {
        for p in [
            self.path.clone(),
            offset_index_path(&self.dir, self.base),
            time_index_path(&self.dir, self.base),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io("deleting segment", p, e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads and decodes a segment's index files; `None` (with a warning) when either is missing
/// or fails its checks, so the caller rebuilds both from the segment.
fn load_index_files(
    dir: &Path,
    base: i64,
    log: &Path,
    file_size: u64,
) -> Option<(OffsetIndex, TimeIndex)> {
    let oi_path = offset_index_path(dir, base);
    let ti_path = time_index_path(dir, base);
    let (oi, ti) = match (std::fs::read(&oi_path), std::fs::read(&ti_path)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, _) => {
            if file_size > 0 {
                let which = if a.is_err() { &oi_path } else { &ti_path };
                warn!(segment = %log.display(), missing = %which.display(), "index file missing: rebuilding it from the segment");
            }
            return None;
        }
    };
    let oi = OffsetIndex::decode(&oi, file_size);
    let ti = TimeIndex::decode(&ti);
    match (oi, ti) {
        (Ok(o), Ok(t)) => Some((o, t)),
        (Err(e), _) => {
            warn!(segment = %log.display(), reason = %e, "offset index corrupt: rebuilding it from the segment");
            None
        }
        (_, Err(e)) => {
            warn!(segment = %log.display(), reason = %e, "time index corrupt: rebuilding it from the segment");
            None
        }
    }
}

/// Whether `window` (starting at file position `window_pos`) holds `len` bytes at `pos`.
fn covers(window: &Bytes, window_pos: u64, pos: u64, len: usize) -> bool {
    pos >= window_pos && pos + len as u64 <= window_pos + window.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let p = log_path(Path::new("/d"), 42);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.index"), None);
    }
}
