//! Fuzzes the check of camera definitions sent to `POST /api/cameras` (and of the stored
//! ones a node starts): any JSON gives a camera or a list of problems, never a panic; a
//! camera that passes keeps passing when its stored definition is checked again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes::config::{camera_from_api, camera_from_definition};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok((camera, logins)) = camera_from_api(v) {
        let mut problems = Vec::new();
        let again = camera_from_definition(camera.definition.clone(), &logins, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(again.map(|c| c.id), Some(camera.id));
    }
});
