//! Fuzzes what crash recovery reads from a segment file left by a crash: box headers, the
//! `moov` sample entries and `moof` sample tables must give values or errors, never a panic
//! or an allocation driven by a length field alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes_storage::recorder::mp4::{box_header, moof_samples, moov_sample_entries};

fuzz_target!(|data: &[u8]| {
    let mut at = 0u64;
    while let Some(h) = box_header(data, at) {
        if h.size == 0 || at.checked_add(h.size).is_none_or(|end| end > data.len() as u64) {
            break;
        }
        at += h.size;
    }
    let _ = moov_sample_entries(data);
    if let Ok((_, samples, _)) = moof_samples(data) {
        assert!(samples.len() <= data.len());
    }
});
