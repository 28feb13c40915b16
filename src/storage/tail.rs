//! The unwritten end of the active segment, held in aligned DMA buffers until a flush writes it.

use glommio::io::{DmaBuffer, DmaFile};

/// Unit of O_DIRECT writes: every write starts and ends on this boundary.
pub const BLOCK: u64 = 4096;
/// Size of one DMA chunk; a flush writes its chunks concurrently. 512 KiB keeps each write in
/// one device request on this machine's virtio disk (1 MiB writes were split in two).
pub const CHUNK_BYTES: usize = 512 * 1024;

pub fn align_down(pos: u64) -> u64 {
    pos / BLOCK * BLOCK
}

pub fn align_up(pos: u64) -> u64 {
    pos.div_ceil(BLOCK) * BLOCK
}

/// One DMA buffer destined for file position `pos`. Invariant: `pos` is block aligned and
/// `len <= buf.len()`.
struct Chunk {
    buf: DmaBuffer,
    pos: u64,
    len: usize,
}

/// A write of the tail: aligned buffers, zero-padded to whole blocks, and the logical end they
/// bring the segment to.
pub struct TailWrite {
    pub chunks: Vec<(DmaBuffer, u64)>,
    pub end: u64,
    /// Bytes of the partial last block at `end` (what the next write must rewrite).
    pub carry: Vec<u8>,
    /// True when the first chunk starts with carried bytes, i.e. rewrites the last block of the
    /// previous write: it must not be issued before that write has completed.
    pub rewrites_carry: bool,
}

/// Bytes appended to the active segment but not yet handed to a write. Invariant: `start` is
/// block aligned, `carry` holds the already-written bytes `start..start + carry.len()` (less
/// than one block), and the chunks hold `start..end` contiguously.
pub struct Tail {
    start: u64,
    carry: Vec<u8>,
    chunks: Vec<Chunk>,
    end: u64,
}

impl Tail {
    /// A tail whose segment ends at `end`; `carry` is the bytes of its partial last block.
    pub fn new(end: u64, carry: Vec<u8>) -> Self {
        let start = align_down(end);
        assert_eq!(
            start + carry.len() as u64,
            end,
            "carry must be the partial last block"
        );
        Tail {
            start,
            carry,
            chunks: Vec::new(),
            end,
        }
    }

    /// Logical end of the segment including unwritten bytes.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// True when there are appended bytes no write has taken yet.
    pub fn is_dirty(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Copies `bytes` to the end of the tail (the one copy an appended batch makes).
    /// `carry_alone` (read only when this starts a new write) gives the block carried over from
    /// the last write a chunk of its own: its rewrite must wait for that write, but the wholly
    /// new blocks after it need not, and a write mixing a written block with unwritten extents
    /// is punted to an io_uring worker. When that write is done and the blocks ahead are written
    /// (zeroed), one write is better: two small writes took twice as long as one here.
    pub fn push(&mut self, file: &DmaFile, mut bytes: &[u8], carry_alone: bool) {
        if self.chunks.is_empty() {
            let size = if self.carry.is_empty() || !carry_alone {
                CHUNK_BYTES
            } else {
                BLOCK as usize
            };
            let mut buf = file.alloc_dma_buffer(size);
            buf.as_bytes_mut()[..self.carry.len()].copy_from_slice(&self.carry);
            self.chunks.push(Chunk {
                buf,
                pos: self.start,
                len: self.carry.len(),
            });
        }
        while !bytes.is_empty() {
            let last = self.chunks.last_mut().expect("at least one chunk");
            let room = last.buf.len() - last.len;
            if room == 0 {
                let pos = last.pos + last.buf.len() as u64;
                let buf = file.alloc_dma_buffer(CHUNK_BYTES);
                self.chunks.push(Chunk { buf, pos, len: 0 });
                continue;
            }
            let n = room.min(bytes.len());
            last.buf.as_bytes_mut()[last.len..last.len + n].copy_from_slice(&bytes[..n]);
            last.len += n;
            bytes = &bytes[n..];
            self.end += n as u64;
        }
    }

    /// Hands every unwritten byte to a write, zero-padded to whole blocks, and starts a new tail
    /// after them. Returns `None` when there is nothing to write.
    pub fn take(&mut self) -> Option<TailWrite> {
        if self.chunks.is_empty() {
            return None;
        }
        let end = self.end;
        let rewrites_carry = !self.carry.is_empty();
        let new_start = align_down(end);
        let last = self.chunks.last().expect("checked");
        let carry_from = (new_start - last.pos) as usize;
        let carry = last.buf.as_bytes()[carry_from..last.len].to_vec();
        let chunks = std::mem::take(&mut self.chunks)
            .into_iter()
            .map(|mut c| {
                let padded = align_up(c.len as u64) as usize;
                c.buf.as_bytes_mut()[c.len..padded].fill(0);
                c.buf.trim_to_size(padded);
                (c.buf, c.pos)
            })
            .collect();
        self.start = new_start;
        self.carry = carry.clone();
        debug_assert_eq!(self.start + self.carry.len() as u64, self.end);
        Some(TailWrite {
            chunks,
            end,
            carry,
            rewrites_carry,
        })
    }
}
