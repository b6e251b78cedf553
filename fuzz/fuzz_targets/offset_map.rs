//! Any text as a commit's metadata (another client's, a damaged one), and maps of our own format
//! with any payload: decoding never panics, and a map it accepts covers only offsets from the
//! commit offset up. Maps that decode survive a round trip through the encoder unchanged.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use msk_sidecar::offsets::map::{Runs, decode};

#[derive(Debug, Arbitrary)]
struct Input {
    committed: i64,
    /// Our prefix and the right commit offset, or free text.
    ours: Option<(bool, Vec<u8>)>,
    text: String,
}

fn uvarint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fuzz_target!(|input: Input| {
    let committed = input.committed.max(0);
    let metadata = match input.ours {
        Some((bitset, payload)) => {
            let mut bytes = Vec::new();
            uvarint(committed.unsigned_abs(), &mut bytes);
            bytes.extend_from_slice(&payload);
            format!("ms1{}{}", if bitset { 'b' } else { 'r' }, URL_SAFE_NO_PAD.encode(bytes))
        }
        None => input.text,
    };
    if let Ok(Some(ranges)) = decode(committed, &metadata) {
        let done: Vec<(i64, i64)> = ranges.from(i64::MIN).collect();
        assert!(done.iter().all(|(start, end)| *start >= committed && start < end));
        assert!(done.windows(2).all(|w| w[0].1 < w[1].0), "sorted, disjoint, not touching");
        // What decodes encodes again to a map naming the same offsets (up to the size limit).
        let mut runs = Runs::default();
        let mut at = committed;
        for (start, end) in &done {
            runs.push(false, (start - at).unsigned_abs());
            runs.push(true, (end - start).unsigned_abs());
            at = *end;
        }
        let again = runs.encode(committed);
        if let Ok(Some(back)) = decode(committed, &again) {
            let back: Vec<(i64, i64)> = back.from(i64::MIN).collect();
            assert!(back.len() <= done.len() && back.iter().zip(&done).all(|(a, b)| a == b || (a.0 == b.0 && a.1 <= b.1)));
        }
    }
});
