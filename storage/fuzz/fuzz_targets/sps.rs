//! Fuzzes the H.264 and H.265 SPS parsers and the parameter-set finder the recorder runs on
//! every key frame from a camera: any bytes give values or errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes_core::VideoCodec;
use panoptes_storage::recorder::sps::{h264_sps, h265_sps, parameter_sets};

fuzz_target!(|data: &[u8]| {
    let _ = h264_sps(data);
    let _ = h265_sps(data);
    let _ = parameter_sets(VideoCodec::H264, data);
    let _ = parameter_sets(VideoCodec::H265, data);
});
