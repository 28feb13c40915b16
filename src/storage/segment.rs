//! One segment of a partition log: `<base offset, 20 digits>.log` holding whole record batches,
//! with its sparse `.index` and `.timeindex` beside it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};
use tracing::warn;

use super::error::{Result, StorageError};
use super::index::{
    OffsetEntry, OffsetIndex, TimeEntry, TimeIndex, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES,
};
use super::tail::{align_down, align_up};
use crate::record::{check_crc, BatchHeader, HEADER_LEN};

/// Bytes read at a time while scanning a segment at recovery.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

/// How far before the end of the active segment recovery starts CRC-checking batches even when
/// the offset index vouches for them. Index entries are captured when a batch is appended and
/// written by a background task, with no fdatasync and without waiting for the batch's own write,
/// so after a crash an entry can point past bytes that never reached the disk: the writes in
/// flight (up to `MAX_ROUNDS_IN_FLIGHT` = 4 rounds of 512 KiB chunks at once) and, for a power
/// loss, what was written but not yet covered by an fdatasync (group commit syncs each batch of
/// retired rounds, so under `Always` that is the same in-flight window). Every byte that can be
/// torn therefore lies within this distance of the end of what was appended, and every index
/// entry lies before that end, so scanning from the last entry at or before
/// `last entry - RECOVERY_RESCAN_BYTES` checks all of them. The distance is measured from the
/// last index entry, not from the file size: the file runs past the data by up to the
/// preallocation step (64 MiB by default), and measuring from there could skip the torn bytes.
/// 8 MiB is four times the 2 MiB (4 × 512 KiB) normally in flight; the write path must keep the
/// unsynced window below it (a round carries the whole tail, so more than one chunk per round
/// eats into the margin). Under `Never`/`Interval` unsynced data is not covered against power
/// loss by design (acknowledged means "written"), but torn writes of a killed broker are.
pub const RECOVERY_RESCAN_BYTES: u64 = 8 << 20;

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
    /// The segment's `index_generation` when the job was taken.
    generation: u64,
    files: Rc<IndexFiles>,
    offset: (u64, Vec<u8>),
    time: (u64, Vec<u8>),
    lens: (usize, usize),
    /// The files may hold bytes past these entries (a rollback or rebuild cut the indexes), so
    /// the job must truncate them. Otherwise the writes only extend the files.
    cut: bool,
}

impl IndexJob {
    /// Writes the entries and, when the files may run past them, cuts each file after them
    /// (dropping entries of a rolled-back tail). Page cache only. The usual job only appends:
    /// its writes extend the files and it needs no `ftruncate` (a metadata operation glommio
    /// runs on its blocking thread, beside the shard).
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
        if self.cut {
            f.offset
                .truncate(o_end)
                .await
                .map_err(|e| StorageError::io("truncating index", &f.offset_path, e))?;
            f.time
                .truncate(t_end)
                .await
                .map_err(|e| StorageError::io("truncating index", &f.time_path, e))?;
        }
        Ok(self)
    }

    /// Makes both index files durable. The two syncs run at once: ext4 can then cover both
    /// with one journal commit.
    pub async fn sync(&self) -> Result<()> {
        let f = &self.files;
        futures::future::try_join(
            sync_index_file(&f.offset, &f.offset_path),
            sync_index_file(&f.time, &f.time_path),
        )
        .await
        .map(|_| ())
    }
}

/// `fdatasync` of one index file.
async fn sync_index_file(file: &BufferedFile, path: &Path) -> Result<()> {
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("syncing index", path, e))
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
    /// The index files hold entries the in-memory indexes dropped (found at open): the next
    /// index job must cut them even with no new entries.
    index_files_ahead: bool,
    /// Bumped whenever the in-memory indexes are cut (rollback): a job taken before the cut
    /// must not mark the entries added since as persisted.
    index_generation: u64,
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
            index_files_ahead: false,
            index_generation: 0,
        }
    }

    /// Opens an existing segment and validates it from its last trustworthy index entry to its
    /// end: for a closed segment the last entry of its index, for the `active` one the last entry
    /// at least [`RECOVERY_RESCAN_BYTES`] before it. Index entries past that point are dropped and
    /// re-derived by the scan; entries the scan did not reach are dropped. Returns the segment
    /// (its indexes marked persisted as far as the files already hold them), why the scan
    /// stopped, and the bytes of its partial last block.
    pub async fn open(
        dir: &Path,
        base: i64,
        index_interval: u32,
        active: bool,
    ) -> Result<(Segment, ScanStop, Vec<u8>)> {
        let path = log_path(dir, base);
        let file = open_data_file(&path, false).await?;
        let file_size = file
            .file_size()
            .await
            .map_err(|e| StorageError::io("stat", &path, e))?;
        // Read the index files before opening them for writing (which creates missing ones).
        let on_disk = load_index_files(dir, base, &path, file_size);
        let index_files = IndexFiles::open(dir, base).await?;
        let mut seg = Segment::new(dir, base, path, file, index_files);
        seg.allocated = file_size;
        let hint = match &on_disk {
            Some((oi, ti, _)) => seg.adopt_indexes(oi.clone(), ti.clone(), active).await,
            None => None,
        };
        // The scan starts at the last entry kept (its batch is validated again), or at 0.
        let (from, expected) = match seg.offset_index.last() {
            Some(e) => (u64::from(e.position), base + i64::from(e.rel_offset)),
            None => (0, base),
        };
        seg.max_timestamp = seg.time_index.last().map_or(i64::MIN, |t| t.timestamp);
        // Everything before the scan start is vouched for by the index.
        seg.size = from;
        seg.next_offset = expected;
        seg.bytes_since_index = 0;
        let (stop, carry) = seg.scan(from, file_size, index_interval, hint).await?;
        seg.trim_indexes_to_size();
        if !active {
            // As when it was sealed: the last time entry holds the largest timestamp.
            seg.seal_time_index();
        }
        // Entries equal to the files' are not written again; the rest are (see `index_dirty`).
        if let Some((oi, ti, ragged)) = &on_disk {
            let offset_ahead = seg.offset_index.mark_persisted_prefix(oi);
            let time_ahead = seg.time_index.mark_persisted_prefix(ti);
            seg.index_files_ahead = offset_ahead || time_ahead || *ragged;
        }
        Ok((seg, stop, carry))
    }

    /// Adopts decoded indexes up to the entry the scan starts from: for a closed segment its
    /// last entry, for the active one the last entry at least `RECOVERY_RESCAN_BYTES` before its
    /// last entry. Later entries are dropped (the scan re-derives them), and so is every time
    /// entry from the start entry's offset on; the first of those is returned as a hint that
    /// restores the largest timestamp of the batches the kept time entries do not cover. Adopts
    /// nothing (the scan rebuilds from the segment start) when no entry is early enough or the
    /// start entry does not point at the batch it claims.
    async fn adopt_indexes(
        &mut self,
        mut oi: OffsetIndex,
        mut ti: TimeIndex,
        active: bool,
    ) -> Option<TimeEntry> {
        let last = oi.last()?;
        let start = if active {
            let before = u64::from(last.position).saturating_sub(RECOVERY_RESCAN_BYTES);
            oi.last_at_or_before_position(before)?
        } else {
            last
        };
        if !self.entry_points_at_its_batch(start).await {
            warn!(segment = %self.path.display(), position = start.position,
                "index entry does not point at its batch: rebuilding the index");
            return None;
        }
        if let Some(after) = start.rel_offset.checked_add(1) {
            oi.truncate_from(after);
        }
        let hint = ti.first_from(start.rel_offset);
        ti.truncate_from(start.rel_offset);
        self.offset_index = oi;
        self.time_index = ti;
        hint
    }

    /// Whether the batch header at `entry`'s position holds `entry`'s offset.
    async fn entry_points_at_its_batch(&self, entry: OffsetEntry) -> bool {
        match read_bytes(
            &self.file,
            &self.path,
            u64::from(entry.position),
            HEADER_LEN,
        )
        .await
        {
            Ok(b) => BatchHeader::parse(&b)
                .map(|h| h.base_offset == self.base + i64::from(entry.rel_offset))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Drops index entries at or past the end the scan reached (the batch an adopted start
    /// entry points at may have failed its check).
    fn trim_indexes_to_size(&mut self) {
        if let Ok(next) = u32::try_from(self.next_offset - self.base) {
            self.offset_index.truncate_from(next);
            self.time_index.truncate_from(next);
        }
        self.recount_since_index();
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
        let resumed_at_entry = self
            .offset_index
            .last()
            .is_some_and(|e| u64::from(e.position) == position);
        if resumed_at_entry {
            // Recovery resumes at an adopted entry: its batch gets back the time entry it got
            // when it was appended (the offset entry is already there).
            self.time_index
                .maybe_push(self.max_timestamp, self.rel(header.last_offset()));
            self.bytes_since_index = 0;
        } else if self.offset_index.is_empty() || self.bytes_since_index >= u64::from(interval) {
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
    /// until the first byte that is not a valid next batch. `time_hint` is a time entry past the
    /// kept ones: once the scan validates the batch holding its offset, its timestamp (the
    /// largest of every batch up to there) joins `max_timestamp`.
    async fn scan(
        &mut self,
        from: u64,
        file_size: u64,
        interval: u32,
        mut time_hint: Option<TimeEntry>,
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
            if let Some(t) = time_hint {
                if self.base + i64::from(t.rel_offset) <= header.last_offset() {
                    self.max_timestamp = self.max_timestamp.max(t.timestamp);
                    time_hint = None;
                }
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
            generation: self.index_generation,
            files: self.index_files.clone(),
            offset: self.offset_index.unpersisted(),
            time: self.time_index.unpersisted(),
            lens: (self.offset_index.len(), self.time_index.len()),
            cut: self.index_files_ahead,
        }
    }

    /// True when index entries are waiting to be written to the files.
    pub fn index_dirty(&self) -> bool {
        self.index_files_ahead
            || self.offset_index.has_unpersisted()
            || self.time_index.has_unpersisted()
    }

    /// Drops the index entries at or after `rel` (a rollback); jobs taken before no longer
    /// count, and the next job cuts the files.
    pub fn truncate_indexes_from(&mut self, rel: u32) {
        self.offset_index.truncate_from(rel);
        self.time_index.truncate_from(rel);
        self.index_generation += 1;
        self.index_files_ahead = true;
    }

    /// Records that a job's entries are in the files.
    pub fn index_persisted(&mut self, job: &IndexJob) {
        debug_assert_eq!(job.base, self.base, "index job applied to another segment");
        if job.generation != self.index_generation {
            // Taken before a rollback cut the indexes: the files may hold entries memory no
            // longer has, and its lengths say nothing about today's entries.
            self.index_files_ahead = true;
            return;
        }
        self.offset_index.mark_persisted(job.lens.0);
        self.time_index.mark_persisted(job.lens.1);
        // Every job cuts the files after its entries.
        self.index_files_ahead = false;
    }

    /// Writes the index entries the files lack (after a rebuild at recovery), and with `durable`
    /// syncs them, so the next open finds them. Nothing to do when the files are up to date.
    pub async fn write_back_index(&mut self, durable: bool) -> Result<()> {
        if !self.index_dirty() {
            return Ok(());
        }
        let job = self.index_job().run().await?;
        if durable {
            job.sync().await?;
        }
        self.index_persisted(&job);
        Ok(())
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
/// or fails its checks, so the caller rebuilds both from the segment. The flag says a file ends
/// in a partial entry (a torn write), which the next index write must cut.
fn load_index_files(
    dir: &Path,
    base: i64,
    log: &Path,
    file_size: u64,
) -> Option<(OffsetIndex, TimeIndex, bool)> {
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
    let ragged = oi.len() % OFFSET_ENTRY_BYTES != 0 || ti.len() % TIME_ENTRY_BYTES != 0;
    let oi = OffsetIndex::decode(&oi, file_size);
    let ti = TimeIndex::decode(&ti);
    match (oi, ti) {
        (Ok(o), Ok(t)) => Some((o, t, ragged)),
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
