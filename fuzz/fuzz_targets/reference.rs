//! Reference, digest and platform parsing must never panic, whatever parses
//! must round-trip through its index key, and the fast reference path must
//! agree with oci-spec's parser wherever it answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mocker::reference::{split_index_key, ImageRef};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let _ = mocker::digest::Digest::parse(input);
    let _ = mocker::platform::Platform::parse(input);
    assert!(mocker::reference::fast_split_agrees(input), "fast path disagrees on {input:?}");
    if let Ok(reference) = ImageRef::parse(input) {
        let key = reference.index_key();
        let (name, _, _) = split_index_key(&key);
        assert_eq!(name, reference.name());
        let again = ImageRef::parse(&key).expect("an index key parses");
        assert_eq!(again.index_key(), key);
    }
});
