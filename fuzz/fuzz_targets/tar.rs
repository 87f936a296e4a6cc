//! Arbitrary bytes through the tar reader alone (PAX records, GNU long
//! names, sparse maps in four formats). Invariants: no panic, every entry's
//! data is exactly its announced size, and a sparse map fits its file.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use mocker::tarstream::Reader;

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(data);
    while let Ok(Some(entry)) = reader.next_entry() {
        let mut read = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            match reader.data().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n as u64,
            }
        }
        assert!(read <= entry.size, "read {read} bytes of a {}-byte entry", entry.size);
        if let Some(sparse) = &entry.sparse {
            let stored: u64 = sparse.segments.iter().map(|s| s.len).sum();
            assert_eq!(stored, entry.size, "a sparse map that does not cover the stored data");
            assert!(sparse.segments.iter().all(|s| s.offset + s.len <= sparse.real_size));
        }
        if read < entry.size {
            break;
        }
    }
});
