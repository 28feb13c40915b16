//! The partition log on real files: round trips across rolls, reads, recovery of indexes,
//! lookups by time, retention, durability policies, bad input and a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use strata::demo::{demo_batch, DEMO_EPOCH_MS};
use strata::record::{set_base_offset, BatchHeader};
use strata::storage::{
    offset_index_path, time_index_path, FsyncPolicy, LogConfig, PartitionLog, StorageError,
};

fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
    strata::runtime::run_local("storage-test", fut).expect("executor")
}

/// Small segments so tests roll often; cache off so reads hit the disk.
fn small(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 256 * 1024,
        preallocate_bytes: 128 * 1024,
        max_batch_bytes: 256 * 1024,
        cache_bytes: 0,
        fsync,
        // Demo batches carry 2024 timestamps: age retention would delete them at every roll.
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// What the log must hold at `offset` for demo batch `index`.
fn expected(index: u64, records: usize, bytes: usize, offset: i64) -> Bytes {
    let mut b = demo_batch(index, records, bytes);
    set_base_offset(&mut b, offset);
    b.freeze()
}

/// Reads the whole log and returns its batches in order, asserting contiguous offsets.
async fn read_all(log: &PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.earliest_offset();
    let end = log.high_watermark();
    while offset < end {
        let got = log.read(offset, 1 << 20).await.expect("read");
        assert!(
            !got.is_empty(),
            "read at {offset} returned nothing before the end {end}"
        );
        for b in got {
            let h = BatchHeader::parse(&b).expect("header");
            assert_eq!(h.base_offset, offset, "offsets must be contiguous");
            offset = h.next_offset();
            out.push(b);
        }
    }
    assert_eq!(offset, end);
    out
}

/// Reopens the log in `dir` (recovering it) and asserts it holds exactly `want`.
fn assert_reopens_holding(dir: &Path, config: &LogConfig, want: &[Bytes]) {
    run(async {
        let log = PartitionLog::open(dir, config.clone()).await.unwrap();
        assert_eq!(read_all(&log).await, want);
    });
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

#[test]
fn round_trip_across_segment_rolls_with_small_and_multi_mib_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small(FsyncPolicy::Always);
    config.segment_bytes = 8 << 20;
    config.max_batch_bytes = 4 << 20;
    // (index, records, record bytes): many small batches, a few of several MiB.
    let shapes: Vec<(u64, usize, usize)> = (0..600u64)
        .map(|i| {
            if i % 150 == 149 {
                (i, 3, 1 << 20)
            } else {
                (i, 1 + (i % 7) as usize, 10 + (i % 300) as usize)
            }
        })
        .collect();
    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut offset = 0i64;
        for &(i, r, b) in &shapes {
            let info = log.append(demo_batch(i, r, b)).await.unwrap();
            assert_eq!(info.base_offset, offset);
            assert_eq!(info.last_offset, offset + r as i64 - 1);
            want.push(expected(i, r, b, offset));
            offset += r as i64;
        }
        assert_eq!(log.high_watermark(), offset);
        assert_eq!(
            read_all(&log).await,
            want,
            "read back from disk, before reopen"
        );
        log.close().await.unwrap();
    });
    assert!(segment_count(dir.path()) >= 2, "the log should have rolled");
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(read_all(&log).await, want, "read back after reopen");
        // Appends continue at the right offset after a reopen.
        let next = log.high_watermark();
        let info = log.append(demo_batch(9999, 2, 50)).await.unwrap();
        assert_eq!(info.base_offset, next);
    });
}

#[test]
fn reads_serve_whole_batches_from_the_cache_and_the_disk_alike() {
    for cache_bytes in [0usize, 64 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cache_bytes,
            ..small(FsyncPolicy::Always)
        };
        run(async {
            let log = PartitionLog::open(dir.path(), config).await.unwrap();
            for i in 0..50u64 {
                log.append(demo_batch(i, 10, 100)).await.unwrap();
            }
            // An offset inside a batch returns the whole batch holding it.
            let got = log.read(25, 1).await.unwrap();
            assert_eq!(got.len(), 1, "max_bytes 1 still returns one whole batch");
            assert_eq!(got[0], expected(2, 10, 100, 20));
            // max_bytes bounds the answer to whole batches.
            let one = got[0].len();
            let got = log.read(20, one * 3 + 1).await.unwrap();
            assert_eq!(got.len(), 3);
            // At and past the end: empty, immediately.
            assert!(log.read(500, 1 << 20).await.unwrap().is_empty());
            assert!(log.read(10_000, 1 << 20).await.unwrap().is_empty());
            // Negative offsets are out of range with a clear error.
            match log.read(-1, 100).await {
                Err(StorageError::OffsetOutOfRange {
                    offset: -1,
                    earliest: 0,
                    latest: 500,
                }) => {}
                other => panic!("expected OffsetOutOfRange, got {other:?}"),
            }
        });
    }
}

#[test]
fn deleted_or_corrupt_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(FsyncPolicy::Always);
    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut offset = 0;
        for i in 0..800u64 {
            log.append(demo_batch(i, 3, 300)).await.unwrap();
            want.push(expected(i, 3, 300, offset));
            offset += 3;
        }
        log.close().await.unwrap();
    });
    let mut bases: Vec<i64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".log").map(|d| d.parse().unwrap())
        })
        .collect();
    bases.sort();
    assert!(
        bases.len() >= 3,
        "want closed segments and an active one, got {bases:?}"
    );
    // A closed segment loses its offset index, another gets garbage in it, the active one
    // loses its time index.
    std::fs::remove_file(offset_index_path(dir.path(), bases[0])).unwrap();
    std::fs::write(offset_index_path(dir.path(), bases[1]), [0xffu8; 40]).unwrap();
    std::fs::remove_file(time_index_path(dir.path(), *bases.last().unwrap())).unwrap();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(read_all(&log).await, want);
        // Lookups through the rebuilt indexes land on the right batch.
        for probe in [0i64, 1, 299, 600, 1199] {
            let got = log.read(probe, 1).await.unwrap();
            let h = BatchHeader::parse(&got[0]).unwrap();
            assert!(h.base_offset <= probe && probe <= h.last_offset());
        }
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS + 250).await.unwrap(),
            Some(750)
        );
    });
    assert!(
        offset_index_path(dir.path(), bases[0]).exists(),
        "rebuilt index is written back"
    );
}

#[test]
fn a_torn_index_entry_is_cut_and_the_index_ends_on_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(FsyncPolicy::Always);
    // A log that stops without `close` (as in a crash) once its index writer has caught up.
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        for i in 0..40 {
            log.append(demo_batch(i, 3, 300)).await.unwrap();
        }
        glommio::timer::sleep(Duration::from_millis(500)).await;
    });
    let index = offset_index_path(dir.path(), 0);
    let whole = std::fs::metadata(&index).unwrap().len();
    assert!(
        whole > 0 && whole % 8 == 0,
        "offset index of whole entries: {whole} bytes"
    );
    // Power failed in the middle of writing the next entry.
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.extend_from_slice(&[0xab; 5]);
    std::fs::write(&index, bytes).unwrap();
    // Recovery keeps the whole entries and cuts the torn one, though no entry is new.
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(read_all(&log).await.len(), 40);
        log.close().await.unwrap();
    });
    assert_eq!(std::fs::metadata(&index).unwrap().len(), whole);
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        for probe in [0i64, 60, 119] {
            let got = log.read(probe, 1).await.unwrap();
            let h = BatchHeader::parse(&got[0]).unwrap();
            assert!(h.base_offset <= probe && probe <= h.last_offset());
        }
    });
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = PartitionLog::open(dir.path(), small(FsyncPolicy::Never))
            .await
            .unwrap();
        // Batch i has timestamp DEMO_EPOCH_MS + i and 5 records: offsets 5i..5i+4.
        for i in 0..300u64 {
            log.append(demo_batch(i, 5, 200)).await.unwrap();
        }
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some(0));
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS).await.unwrap(),
            Some(0)
        );
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS + 1).await.unwrap(),
            Some(5)
        );
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS + 123).await.unwrap(),
            Some(615)
        );
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS + 299).await.unwrap(),
            Some(1495)
        );
        assert_eq!(
            log.offset_for_timestamp(DEMO_EPOCH_MS + 300).await.unwrap(),
            None
        );
    });
}

#[test]
fn retention_deletes_whole_closed_segments_by_bytes_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(600 * 1024),
        retention_ms: None,
        ..small(FsyncPolicy::Never)
    };
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        for i in 0..2000u64 {
            log.append(demo_batch(i, 2, 500)).await.unwrap();
        }
        let stats = log.stats();
        // Rolls enforce retention: what is left is at most the limit plus the active segment
        // and the one segment whose deletion would take the log under the limit.
        assert!(stats.bytes <= 600 * 1024 + 2 * 256 * 1024, "{stats:?}");
        assert!(stats.earliest_offset > 0, "old segments were deleted");
        assert_eq!(segment_count(dir.path()), stats.segments);
        // Reads below the new start are out of range; from the start on, everything is there.
        assert!(matches!(
            log.read(0, 100).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let batches = read_all(&log).await;
        assert_eq!(
            BatchHeader::parse(&batches[0]).unwrap().base_offset,
            stats.earliest_offset
        );
    });
    // By age: demo timestamps are from 2024, so with a one-day limit every closed segment goes.
    let config = LogConfig {
        retention_bytes: None,
        retention_ms: Some(24 * 3600 * 1000),
        ..config
    };
    run(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        let before = log.stats();
        let now = strata::clock::now_ms();
        let out = log.enforce_retention(now).unwrap();
        assert_eq!(
            out.segments_deleted,
            before.segments - 1,
            "all but the active segment"
        );
        let after = log.stats();
        assert_eq!(after.segments, 1);
        assert_eq!(
            after.high_watermark, before.high_watermark,
            "the active segment is never deleted"
        );
        assert_eq!(segment_count(dir.path()), 1);
    });
}

#[test]
fn every_fsync_policy_acknowledges_and_keeps_data_across_reopen() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = small(policy);
        let mut want = Vec::new();
        run(async {
            let log = PartitionLog::open(dir.path(), config.clone())
                .await
                .unwrap();
            // 64 appends in flight at once: offsets are assigned in call order.
            let mut pending = FuturesUnordered::new();
            for i in 0..64u64 {
                pending.push(log.append(demo_batch(i, 4, 64)));
                want.push(expected(i, 4, 64, i as i64 * 4));
            }
            let mut bases = Vec::new();
            while let Some(r) = pending.next().await {
                bases.push(r.unwrap().base_offset);
            }
            bases.sort();
            assert_eq!(bases, (0..64).map(|i| i * 4).collect::<Vec<_>>());
            assert_eq!(log.high_watermark(), 256, "{policy}");
            if let FsyncPolicy::Interval(_) = policy {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            log.close().await.unwrap();
        });
        run(async {
            let log = PartitionLog::open(dir.path(), config.clone())
                .await
                .unwrap();
            assert_eq!(read_all(&log).await, want, "{policy}");
        });
    }
}

#[test]
fn invalid_and_oversized_batches_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = PartitionLog::open(dir.path(), small(FsyncPolicy::Always))
            .await
            .unwrap();
        log.append(demo_batch(0, 2, 10)).await.unwrap();
        let mut bad = demo_batch(1, 2, 10);
        let n = bad.len();
        bad[n - 1] ^= 0x01;
        let err = log.append(bad).await.unwrap_err();
        assert!(err.to_string().contains("crc mismatch"), "{err}");
        let err = log
            .append(BytesMut::from(&b"not a batch"[..]))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidBatch(_)), "{err}");
        let big = demo_batch(2, 1, 300 * 1024);
        let err = log.append(big).await.unwrap_err();
        assert!(
            matches!(err, StorageError::BatchTooLarge { limit: 262144, .. }),
            "{err}"
        );
        // The log is untouched and keeps working.
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(
            log.append(demo_batch(3, 1, 10)).await.unwrap().base_offset,
            2
        );
    });
}

#[test]
fn long_poll_waiter_is_woken_by_an_append() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = PartitionLog::open(dir.path(), small(FsyncPolicy::Always))
            .await
            .unwrap();
        let reader = log.clone();
        let waiter = glommio::spawn_local(async move {
            reader.wait_for_data(0).await;
            reader.read(0, 1 << 20).await.unwrap()
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        log.append(demo_batch(0, 1, 10)).await.unwrap();
        let got = glommio::timer::timeout(Duration::from_secs(5), async { Ok(waiter.await) })
            .await
            .unwrap();
        assert_eq!(got, vec![expected(0, 1, 10, 0)]);
    });
}

#[test]
fn a_fresh_thread_whose_first_file_is_empty_can_still_read_with_o_direct() {
    // glommio decides polled-I/O support from the first O_DIRECT file a thread opens on a
    // device; an empty one makes every later read fail with EOPNOTSUPP unless the log primes
    // the device with a non-empty probe file first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        run(async {
            let log = PartitionLog::open(&path, small(FsyncPolicy::Always))
                .await
                .unwrap();
            log.append(demo_batch(0, 3, 100)).await.unwrap();
            let got = log
                .read(0, 1 << 20)
                .await
                .expect("O_DIRECT read on a fresh thread");
            assert_eq!(got, vec![expected(0, 3, 100, 0)]);
        })
    })
    .join()
    .unwrap();
}

/// A small ext4 filesystem on a loop device, unmounted on drop.
struct SmallFs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(bytes: u64) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        if !ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))
            || !ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mount))
        {
            return None;
        }
        Some(SmallFs { mount, _dir: dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

#[test]
fn a_full_disk_fails_the_append_cleanly_and_the_log_recovers_when_space_returns() {
    let Some(fs) = SmallFs::new(16 << 20) else {
        // Mounting needs root (CI runs as root); say so rather than pass silently.
        eprintln!("SKIPPED: cannot mount a loop filesystem here (not root?)");
        return;
    };
    let dir = fs.mount.join("log");
    let filler = fs.mount.join("filler");
    let config = LogConfig {
        segment_bytes: 4 << 20,
        preallocate_bytes: 1 << 20,
        max_batch_bytes: 1 << 20,
        cache_bytes: 0,
        retention_ms: None,
        ..LogConfig::default()
    };
    // Leave about 3 MiB free.
    let avail = |p: &Path| {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let free = avail(&fs.mount);
    std::fs::write(&filler, vec![1u8; (free - (3 << 20)) as usize]).unwrap();

    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(&dir, config.clone()).await.unwrap();
        let mut offset = 0i64;
        let mut full = None;
        for i in 0..200u64 {
            match log.append(demo_batch(i, 4, 64 * 1024)).await {
                Ok(info) => {
                    assert_eq!(info.base_offset, offset);
                    want.push(expected(i, 4, 64 * 1024, offset));
                    offset += 4;
                }
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        let err = full.expect("the disk should fill up");
        assert!(err.is_no_space(), "expected a no-space error, got {err}");
        assert!(err.to_string().contains("no space left"), "{err}");
        // Every acknowledged batch is still there; the failed one left no trace.
        assert_eq!(log.high_watermark(), offset);
        assert_eq!(read_all(&log).await, want);
        // Space comes back: the next append works.
        std::fs::remove_file(&filler).unwrap();
        let info = log.append(demo_batch(1000, 4, 64 * 1024)).await.unwrap();
        assert_eq!(info.base_offset, offset);
        want.push(expected(1000, 4, 64 * 1024, offset));
        log.close().await.unwrap();
    });
    run(async {
        let log = PartitionLog::open(&dir, config).await.unwrap();
        assert_eq!(read_all(&log).await, want, "after reopen");
    });
    drop(fs);
}

/// Bytes of `path` in `start..end` that lie in unwritten (preallocated, never written) extents,
/// from the FIEMAP ioctl; `None` when the file system does not answer it.
fn unwritten_bytes(path: &Path, start: u64, end: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 0x1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 256;
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; EXTENTS],
    }
    let file = std::fs::File::open(path).unwrap();
    let mut map = Fiemap {
        start,
        length: end - start,
        flags: FIEMAP_FLAG_SYNC,
        mapped_extents: 0,
        extent_count: EXTENTS as u32,
        reserved: 0,
        extents: [Extent::default(); EXTENTS],
    };
    // SAFETY: `map` is a `struct fiemap` with room for `extent_count` extents, as the ioctl needs.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) };
    if rc != 0 {
        return None;
    }
    assert!(
        (map.mapped_extents as usize) < EXTENTS,
        "more extents than the test reads"
    );
    let unwritten = map.extents[..map.mapped_extents as usize]
        .iter()
        .filter(|e| e.flags & FIEMAP_EXTENT_UNWRITTEN != 0)
        .map(|e| {
            let lo = e.logical.max(start);
            let hi = (e.logical + e.length).min(end);
            hi.saturating_sub(lo)
        })
        .sum();
    Some(unwritten)
}

#[test]
fn under_always_the_segment_is_zeroed_ahead_of_the_tail_and_appends_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        cache_bytes: 0,
        ..LogConfig::default()
    };
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        log.append(demo_batch(0, 4, 1000)).await.unwrap();
        want.push(expected(0, 4, 1000, 0));
        // The zeroer runs in the background: give it time to write and sync 4 MiB ahead.
        let ahead = (4096, 4 << 20);
        let mut left = unwritten_bytes(&path, ahead.0, ahead.1);
        for _ in 0..200 {
            if left.is_none_or(|n| n == 0) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
            left = unwritten_bytes(&path, ahead.0, ahead.1);
        }
        match left {
            Some(n) => assert_eq!(n, 0, "unwritten bytes ahead of the tail under always"),
            None => eprintln!("FIEMAP unsupported here: extent check skipped"),
        }
        // Appends now land on the zeroed blocks, across several zero pieces.
        for i in 1..400u64 {
            log.append(demo_batch(i, 8, 1000)).await.unwrap();
            want.push(expected(i, 8, 1000, 4 + (i as i64 - 1) * 8));
        }
        assert_eq!(read_all(&log).await, want);
        log.close().await.unwrap();
        let data = log.stats().bytes;
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            data,
            "a closed segment ends at its last batch, zeros cut"
        );
    });
    assert_reopens_holding(dir.path(), &config, &want);
}

#[test]
fn under_never_nothing_is_zeroed_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    };
    let path = dir.path().join(format!("{:020}.log", 0));
    run(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(demo_batch(0, 4, 1000)).await.unwrap();
        log.flush().await.unwrap();
        glommio::timer::sleep(Duration::from_millis(100)).await;
        if let Some(n) = unwritten_bytes(&path, 1 << 20, 4 << 20) {
            assert_eq!(n, 3 << 20, "preallocated blocks stay unwritten under never");
        }
    });
}

#[test]
fn time_rolls_under_always_leave_no_zeros_past_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Time-based rolls seal segments far from their size cap, where the zeroer still has room
    // to zero ahead; with appends in flight the flusher still loops after a roll's flush, and it
    // must not start a zeroing run between that flush and the cut.
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        segment_ms: Some(60),
        retention_ms: None,
        cache_bytes: 0,
        ..LogConfig::default()
    };
    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut pending = FuturesUnordered::new();
        for i in 0..3000u64 {
            pending.push(log.append(demo_batch(i, 64, 1000)));
            want.push(expected(i, 64, 1000, i as i64 * 64));
            if pending.len() >= 8 {
                pending.next().await.unwrap().unwrap();
            }
        }
        while let Some(r) = pending.next().await {
            r.unwrap();
        }
        log.close().await.unwrap();
        assert!(segment_count(dir.path()) > 1, "time rolled segments");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(
            on_disk,
            log.stats().bytes,
            "no zeros past any segment's end"
        );
    });
    assert_reopens_holding(dir.path(), &config, &want);
}

#[test]
fn a_log_left_without_close_right_after_rolls_reopens_whole() {
    // An executor that stops right after appends that rolled (as a crash would): the last
    // index entries were never persisted, and the active segment keeps its preallocated tail.
    let dir = tempfile::tempdir().unwrap();
    let config = small(FsyncPolicy::Always);
    let mut want = Vec::new();
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        for i in 0..300u64 {
            log.append(demo_batch(i, 4, 1000)).await.unwrap();
            want.push(expected(i, 4, 1000, i as i64 * 4));
        }
        assert!(segment_count(dir.path()) > 3, "the appends rolled segments");
    });
    run(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(read_all(&log).await, want);
        // And it takes appends after them.
        log.append(demo_batch(300, 4, 1000)).await.unwrap();
        want.push(expected(300, 4, 1000, 1200));
        assert_eq!(read_all(&log).await, want);
        log.close().await.unwrap();
    });
}
