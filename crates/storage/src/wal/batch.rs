//! The records collected since the last sync, already encoded into frame buffers.

use std::fmt;

use super::format::{FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD};

/// Encoded records waiting for [`super::Wal::sync`].
///
/// Records are encoded at append time, straight into the buffer that will be
/// written, behind room for the frame header. A batch whose payload would exceed
/// [`MAX_FRAME_PAYLOAD`] continues in a further frame; normally there is exactly one.
#[derive(Default)]
pub(crate) struct Batch {
    frames: Vec<Vec<u8>>,
    /// An emptied buffer kept from the last sync, to avoid reallocating each time.
    spare: Vec<u8>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<usize> = self.frames.iter().map(Vec::len).collect();
        f.debug_struct("Batch")
            .field("frame_bytes", &sizes)
            .finish()
    }
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Appends one record of `len` bytes, produced by `encode`.
    pub(crate) fn push(&mut self, len: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        let header = FRAME_HEADER_LEN as usize;
        let fits = self
            .frames
            .last()
            .is_some_and(|f| (f.len() - header + len) as u64 <= MAX_FRAME_PAYLOAD);
        if !fits {
            let mut buf = std::mem::take(&mut self.spare);
            buf.clear();
            buf.resize(header, 0);
            self.frames.push(buf);
        }
        let frame = self.frames.last_mut().expect("a frame was just ensured");
        let before = frame.len();
        encode(frame);
        debug_assert_eq!(frame.len() - before, len, "record length mismatch");
    }

    /// Takes the frame buffers (each starting with header room) out of the batch.
    pub(crate) fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.frames)
    }

    /// Puts frames taken with [`Batch::take`] and not written back in front, so the
    /// next sync writes them first.
    pub(crate) fn restore(&mut self, mut frames: Vec<Vec<u8>>) {
        frames.append(&mut self.frames);
        self.frames = frames;
    }

    /// Hands a written buffer back for reuse, unless it is outsized.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        const KEEP_AT_MOST: usize = 1 << 20;
        if buf.capacity() <= KEEP_AT_MOST {
            self.spare = buf;
        }
    }
}
