//! Fuzzes the spool's line parser and scanner: any bytes must give records or errors,
//! never a panic, and every good record must format back to a line that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes_storage::events::spool::{format_line, parse_line, scan};

fuzz_target!(|data: &[u8]| {
    let _ = parse_line(data);
    let s = scan(data, usize::MAX);
    assert!(s.consumed + s.tail <= data.len());
    for (end, record) in s.records {
        assert!(end <= data.len());
        if let Ok(line) = format_line(&record) {
            assert_eq!(parse_line(&line[..line.len() - 1]).ok(), Some(record));
        }
    }
});
