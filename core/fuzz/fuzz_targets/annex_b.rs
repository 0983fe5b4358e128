//! Fuzzes the Annex B NAL splitter and the key-frame checks that run on every frame a
//! camera sends: any bytes must split into non-empty NAL units lying inside the input,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes_core::frame::{annex_b_nals, h264_is_idr, h265_is_irap};

fuzz_target!(|data: &[u8]| {
    let start = data.as_ptr() as usize;
    for nal in annex_b_nals(data) {
        assert!(!nal.is_empty());
        let at = nal.as_ptr() as usize;
        assert!(at >= start && at + nal.len() <= start + data.len());
    }
    let _ = h264_is_idr(data);
    let _ = h265_is_irap(data);
    // Camera ids come from configuration and URLs.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = panoptes_core::CameraId::new(s) {
            assert_eq!(id.as_str(), s);
        }
    }
});
