//! Registry documents are untrusted: classification, validation, platform
//! selection and config parsing must reject, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mocker::manifest::{parse_config, parse_document, select_platform, Document};
use mocker::platform::Platform;

fuzz_target!(|data: &[u8]| {
    if let Ok(Document::Index(index)) = parse_document(data, "fuzz") {
        let _ = select_platform(&index, &Platform::host());
    }
    let _ = parse_config(data, 1, "fuzz");
});
