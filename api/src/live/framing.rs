//! RFC 4571 framing for ICE over TCP: on the byte stream, every STUN message, DTLS record
//! and RTP/RTCP packet is preceded by its length as a 2-byte big-endian number (so a frame
//! holds at most 65535 bytes).
//!
//! Without I/O: [`FrameDecoder`] takes bytes as the socket gives them (any split) and
//! yields whole frames; [`encode`] prefixes an outgoing packet. The module uses only `std`,
//! so the fuzz target (`api/fuzz`, `rfc4571`) compiles this file alone.

use std::fmt;

/// The largest frame the 2-byte length can announce.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// The length prefix's size.
pub const HEADER: usize = 2;

/// A length the stream cannot carry or the reader will not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// The length announced (or asked to send).
    pub len: usize,
    /// The limit.
    pub max: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a frame of {} bytes is over the limit of {}", self.len, self.max)
    }
}

impl std::error::Error for TooLong {}

/// Appends `packet` with its length prefix to `out`.
pub fn encode(packet: &[u8], out: &mut Vec<u8>) -> Result<(), TooLong> {
    let len = u16::try_from(packet.len()).map_err(|_| TooLong { len: packet.len(), max: MAX_FRAME })?;
    out.reserve(HEADER + packet.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Ok(())
}

/// Splits a received byte stream into frames.
///
/// Memory is bounded by the largest frame it accepts plus what one [`push`](Self::push)
/// brings, provided the caller takes every frame (`next_frame` until `None`) before
/// pushing more. A length over the limit poisons the decoder: the stream cannot be
/// resynchronised, so every later call returns the same error and the caller should close
/// the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the bytes not yet returned.
    start: usize,
    max: usize,
    error: Option<TooLong>,
}

impl FrameDecoder {
    /// A decoder accepting frames of up to `max` bytes (at most [`MAX_FRAME`]).
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), start: 0, max: max.min(MAX_FRAME), error: None }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame (possibly empty: a zero length is a valid, empty frame), `None`
    /// when more bytes are needed, or the error once a length is over the limit.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], TooLong>> {
        if let Some(e) = self.error {
            return Some(Err(e));
        }
        let rest = self.buf.get(self.start..)?;
        let [hi, lo, ..] = *rest else { return None };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len > self.max {
            let e = TooLong { len, max: self.max };
            self.error = Some(e);
            self.buf = Vec::new();
            self.start = 0;
            return Some(Err(e));
        }
        if rest.len() < HEADER + len {
            return None;
        }
        let from = self.start + HEADER;
        self.start = from + len;
        self.buf.get(from..from + len).map(Ok)
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            encode(p, &mut out).unwrap();
        }
        out
    }

    fn drain(d: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(f) = d.next_frame() {
            v.push(f.unwrap().to_vec());
        }
        v
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut d = FrameDecoder::new(MAX_FRAME);
        d.push(&framed(&[b"stun", b"dtls record", b"r"]));
        assert_eq!(drain(&mut d), vec![b"stun".to_vec(), b"dtls record".to_vec(), b"r".to_vec()]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn frames_split_at_every_byte() {
        let packets: [&[u8]; 3] = [b"first", &[0x80; 300], b"third"];
        let stream = framed(&packets);
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new(MAX_FRAME);
            d.push(&stream[..cut]);
            let mut got = drain(&mut d);
            d.push(&stream[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got, packets.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), "cut at {cut}");
        }
        // One byte at a time, the length prefix included.
        let mut d = FrameDecoder::new(MAX_FRAME);
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], vec![0x80; 300]);
    }

    #[test]
    fn zero_length_frames_are_empty_frames() {
        let mut d = FrameDecoder::new(MAX_FRAME);
        d.push(&[0, 0, 0, 0, 0, 1, 7]);
        assert_eq!(drain(&mut d), vec![vec![], vec![], vec![7]]);
    }

    #[test]
    fn the_largest_frame_passes_and_nothing_larger_can_be_sent() {
        let big = vec![0xab; MAX_FRAME];
        let mut out = Vec::new();
        encode(&big, &mut out).unwrap();
        assert_eq!(&out[..2], &[0xff, 0xff]);
        let mut d = FrameDecoder::new(MAX_FRAME);
        d.push(&out[..40_000]);
        assert!(d.next_frame().is_none());
        d.push(&out[40_000..]);
        assert_eq!(d.next_frame().unwrap().unwrap().len(), MAX_FRAME);
        assert!(d.next_frame().is_none());
        let e = encode(&vec![0; MAX_FRAME + 1], &mut Vec::new()).unwrap_err();
        assert_eq!(e, TooLong { len: MAX_FRAME + 1, max: MAX_FRAME });
    }

    #[test]
    fn a_length_over_the_limit_poisons_the_stream() {
        let mut d = FrameDecoder::new(1500);
        d.push(&framed(&[b"ok"]));
        // An HTTP request on the port: "GE" announces 18245 bytes.
        d.push(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d.next_frame(), Some(Ok(&b"ok"[..])));
        let e = TooLong { len: 0x4745, max: 1500 };
        assert_eq!(d.next_frame(), Some(Err(e)));
        d.push(&framed(&[b"later"]));
        assert_eq!(d.next_frame(), Some(Err(e)));
        assert_eq!(d.buffered(), 0);
        // At the limit is fine.
        let mut d = FrameDecoder::new(1500);
        d.push(&framed(&[&[1; 1500]]));
        assert_eq!(d.next_frame().map(|f| f.map(<[u8]>::len)), Some(Ok(1500)));
    }

    #[test]
    fn garbage_never_panics_and_memory_stays_bounded() {
        let mut seed = 0x9e37_79b9_u32;
        for max in [0, 1, 100, 1500, MAX_FRAME] {
            let mut d = FrameDecoder::new(max);
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let chunk: Vec<u8> = (0..(seed % 97)).map(|i| (seed >> (i % 24)) as u8).collect();
                d.push(&chunk);
                while let Some(Ok(f)) = d.next_frame() {
                    assert!(f.len() <= max);
                }
                assert!(d.buffered() <= HEADER + max + 97);
            }
        }
    }
}
