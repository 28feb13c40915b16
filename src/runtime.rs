//! Building glommio executors the same way everywhere (tools, tests, benches), with the settings
//! measured on this project's machines. The broker's pinned shard pool builds on this.

use glommio::{LocalExecutorBuilder, Placement};

/// DMA memory registered per executor. 64 MiB measured 2× the write and 3.8× the read bandwidth
/// of glommio's 10 MiB default on this machine. Its pages are not physically contiguous: a 1 MiB
/// write from it still splits at the disk's 254 segments (hence `CHUNK_BYTES` of 512 KiB).
pub const IO_MEMORY_BYTES: usize = 64 << 20;

/// Awaiting a timer this short yields until glommio's reactor has run: it is still pending when
/// first polled (a 1 ns timer has already expired then and does not yield) and fires in the
/// reactor turn after the current scheduler pass.
const REACTOR_TURN: std::time::Duration = std::time::Duration::from_micros(10);

/// Yields until glommio's reactor has run once. The reactor hands the I/O queued so far to the
/// kernel first: glommio submits it only between scheduler passes, so work that follows this
/// no longer holds back the writes issued before it.
pub async fn reactor_turn() {
    glommio::timer::sleep(REACTOR_TURN).await;
}

/// Work on at least this many bytes (a checksum or copy of a produce request or batch) first
/// lets the writes queued in this scheduler pass reach the kernel ([`submit_queued_writes`]);
/// smaller work costs less than the extra reactor turn.
pub const SUBMIT_BEFORE_BYTES: usize = 128 * 1024;

thread_local! {
    /// Writes were handed to this thread's executor since the last reactor turn one of
    /// [`submit_queued_writes`]'s callers saw: they may still wait in glommio's queue.
    static WRITES_QUEUED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that writes were handed to glommio in this scheduler pass (see [`submit_queued_writes`]).
pub fn note_writes_queued() {
    WRITES_QUEUED.with(|q| q.set(true));
}

/// Lets the writes queued in this scheduler pass reach the kernel before CPU-heavy work (a
/// large copy or checksum): waits one reactor turn if any were noted since the last such turn.
/// glommio submits queued I/O only between passes, and tasks woken together (the disk completes
/// writes in bursts) all run in one pass, so each one's work would otherwise hold back the
/// writes of all before it while the disk idles.
pub async fn submit_queued_writes() {
    if !WRITES_QUEUED.with(|q| q.get()) {
        return;
    }
    reactor_turn().await;
    // The reactor ran, and first submitted everything queued before it.
    WRITES_QUEUED.with(|q| q.set(false));
}

/// Runs `fut` to completion on a new unpinned executor on the current thread.
///
/// `spin_before_park` and `preempt_timer` stay at glommio's defaults: spinning starves the
/// kernel's fdatasync worker on a pinned core, and a short preempt timer has stalled executors.
pub fn run_local<T, F>(name: &str, fut: F) -> Result<T, glommio::GlommioError<()>>
where
    F: std::future::Future<Output = T>,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(IO_MEMORY_BYTES)
        .make()?;
    Ok(ex.run(fut))
}
