//! Fuzzes the ICE-TCP (RFC 4571) frame decoder that reads what browsers, and anything else
//! that connects to `server.webrtc_tcp`, send: the input is a byte stream cut into reads at
//! fuzzer-chosen points. However it is cut, the decoder must yield the same frames as for
//! the whole stream at once, each within the limit, re-encoding them must give back the
//! stream's consumed prefix, and nothing may panic or grow without bound.
#![no_main]

#[path = "../../src/live/framing.rs"]
#[allow(dead_code)]
mod framing;

use framing::{FrameDecoder, HEADER, MAX_FRAME, encode};
use libfuzzer_sys::fuzz_target;

/// Every frame until `None` or the error; whether it failed.
fn drain(d: &mut FrameDecoder, out: &mut Vec<Vec<u8>>) -> bool {
    while let Some(f) = d.next_frame() {
        match f {
            Ok(f) => out.push(f.to_vec()),
            Err(_) => return true,
        }
    }
    false
}

fuzz_target!(|input: &[u8]| {
    let [a, b, c, stream @ ..] = input else { return };
    // The limit: small ones hit the error path, the largest the 2-byte maximum.
    let max = match a % 4 {
        0 => usize::from(u16::from_be_bytes([*b, *c])),
        1 => usize::from(*b),
        2 => 1500,
        _ => MAX_FRAME,
    };

    let mut whole = FrameDecoder::new(max);
    whole.push(stream);
    let mut expected = Vec::new();
    let whole_failed = drain(&mut whole, &mut expected);

    // The same stream in reads of 1..=32 bytes, sizes from the control bytes.
    let mut split = FrameDecoder::new(max);
    let mut got = Vec::new();
    let mut failed = false;
    let mut at = 0;
    let mut step = usize::from(*b) ^ usize::from(*c);
    while at < stream.len() && !failed {
        step = step.wrapping_mul(31).wrapping_add(7);
        let n = (step % 32 + 1).min(stream.len() - at);
        split.push(&stream[at..at + n]);
        at += n;
        failed = drain(&mut split, &mut got);
        assert!(split.buffered() <= HEADER + max.min(MAX_FRAME) + 32);
    }
    assert_eq!(failed, whole_failed);
    assert_eq!(got, expected);

    let mut again = Vec::new();
    for f in &expected {
        assert!(f.len() <= max);
        encode(f, &mut again).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(&stream[..again.len()], &again[..]);
});
