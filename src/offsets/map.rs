//! The offset map: which records above a commit point are already done, carried in the commit's
//! metadata so that the next owner of the partition (another member after a rebalance, or this
//! one after a restart) skips them instead of delivering them again.
//!
//! The idea is Confluent Parallel Consumer's (`OffsetMapCodecManager`); the encoding is ours.
//! The metadata is `ms1` + a kind letter + base64url (no padding) of: the commit offset as an
//! unsigned varint (a map only applies to the offset it was written with), then either
//! - `b` a bitset: bit *i* (least significant first) says offset `commit + i` is done; or
//! - `r` run lengths: unsigned varints alternating not-done / done, starting with not-done.
//!
//! The shorter one is used. Kafka keeps up to 4096 bytes of metadata by default
//! (`offset.metadata.max.bytes`); a map that would not fit keeps its longest prefix that does:
//! records past it are delivered again, never skipped. Anything unreadable (another client's
//! metadata, a broker that keeps none, a map for another offset) means no map: plain redelivery
//! from the commit point.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest metadata written, in bytes (Kafka's default limit is 4096).
pub const MAX_METADATA: usize = 4000;

const PREFIX: &str = "ms1";

/// Why a commit's metadata holds no usable map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Metadata written by something else.
    #[error("the commit metadata was not written by msk-sidecar")]
    Foreign,
    /// Our prefix, but the rest does not decode.
    #[error("the offset map in the commit metadata is damaged: {0}")]
    Damaged(&'static str),
    /// A map written for another commit offset (the offsets were reset since).
    #[error("the offset map was written for offset {map}, the committed offset is {committed}")]
    Stale {
        /// The offset the map was written with.
        map: i64,
        /// The committed offset now.
        committed: i64,
    },
}

/// Offsets known to be done, as sorted disjoint half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneRanges {
    /// `(start, end)`, `start < end`, ascending, not touching.
    ranges: VecDeque<(i64, i64)>,
}

impl DoneRanges {
    /// Ranges from runs starting at `start`: lengths alternate not-done, done.
    fn from_runs(start: i64, runs: impl IntoIterator<Item = u64>) -> Result<Self, MapError> {
        let mut ranges = VecDeque::new();
        let mut at = start;
        for (index, run) in runs.into_iter().enumerate() {
            let run = i64::try_from(run).map_err(|_| MapError::Damaged("run too long"))?;
            let end = at.checked_add(run).ok_or(MapError::Damaged("run past the last offset"))?;
            if index % 2 == 1 && run > 0 {
                // A not-done run of length 0 between two done runs joins them.
                match ranges.back_mut() {
                    Some((_, last_end)) if *last_end == at => *last_end = end,
                    _ => ranges.push_back((at, end)),
                }
            }
            at = end;
        }
        Ok(DoneRanges { ranges })
    }

    /// Whether any offset is known to be done.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Offsets known to be done.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| (e - s).unsigned_abs()).sum()
    }

    /// Whether `offset` is done. Offsets are asked in increasing order: ranges wholly below
    /// `offset` are dropped (a record asked again after a seek back is then not skipped: it is
    /// delivered again, which at-least-once allows).
    pub fn take(&mut self, offset: i64) -> bool {
        while self.ranges.front().is_some_and(|(_, end)| *end <= offset) {
            self.ranges.pop_front();
        }
        self.ranges.front().is_some_and(|(start, _)| *start <= offset)
    }

    /// The ranges at or above `from`, clipped.
    pub fn from(&self, from: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ranges
            .iter()
            .filter(move |(_, end)| *end > from)
            .map(move |(start, end)| ((*start).max(from), *end))
    }
}

/// Builds the run lengths of a map, merging adjacent segments.
#[derive(Debug, Default)]
pub struct Runs {
    /// Alternating not-done / done lengths, starting with not-done.
    runs: Vec<u64>,
    /// Offsets covered so far.
    covered: u64,
}

impl Runs {
    /// Appends `len` offsets that are `done` or not.
    pub fn push(&mut self, done: bool, len: u64) {
        if len == 0 {
            return;
        }
        let wanted_parity = usize::from(done);
        if self.runs.is_empty() && done {
            self.runs.push(0);
        }
        let last_parity = self.runs.len().checked_sub(1).map(|i| i % 2);
        match self.runs.last_mut() {
            Some(last) if last_parity == Some(wanted_parity) => *last += len,
            _ => self.runs.push(len),
        }
        self.covered += len;
    }

    /// The metadata for commit offset `commit`: empty when nothing above it is done.
    pub fn encode(mut self, commit: i64) -> String {
        if self.runs.len() % 2 == 1 {
            self.runs.pop(); // a trailing not-done run says nothing
        }
        if self.runs.len() < 2 {
            return String::new();
        }
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, commit.unsigned_abs());
        let fits = |payload_len: usize| PREFIX.len() + 1 + (payload_len * 4).div_ceil(3) <= MAX_METADATA;
        let span: u64 = self.runs.iter().sum();
        let bitset_len = head.len() + usize::try_from(span.div_ceil(8)).unwrap_or(usize::MAX);
        let runs_len = head.len() + self.runs.iter().map(|r| uvarint_len(*r)).sum::<usize>();
        if bitset_len < runs_len && fits(bitset_len) {
            let mut payload = head;
            let mut bits = vec![0u8; bitset_len - payload.len()];
            let mut at = 0u64;
            for (index, run) in self.runs.iter().enumerate() {
                if index % 2 == 1 {
                    for bit in at..at + run {
                        // `bit < span`, so the index is within `bits`.
                        if let Some(byte) = usize::try_from(bit / 8).ok().and_then(|i| bits.get_mut(i)) {
                            *byte |= 1 << (bit % 8);
                        }
                    }
                }
                at += run;
            }
            payload.extend_from_slice(&bits);
            return format!("{PREFIX}b{}", URL_SAFE_NO_PAD.encode(payload));
        }
        // Runs, cut to the longest prefix that fits (ending on a done run).
        let mut payload = head;
        for pair in self.runs.chunks(2) {
            let mut next = payload.clone();
            pair.iter().for_each(|r| put_uvarint(&mut next, *r));
            if !fits(next.len()) {
                break;
            }
            payload = next;
        }
        if payload.len() == uvarint_len(commit.unsigned_abs()) {
            return String::new();
        }
        format!("{PREFIX}r{}", URL_SAFE_NO_PAD.encode(payload))
    }
}

/// Reads the map of a commit of `committed` from its `metadata`. Empty metadata is no map.
pub fn decode(committed: i64, metadata: &str) -> Result<Option<DoneRanges>, MapError> {
    if metadata.is_empty() {
        return Ok(None);
    }
    let rest = metadata.strip_prefix(PREFIX).ok_or(MapError::Foreign)?;
    let (kind, data) = rest.split_at_checked(1).ok_or(MapError::Damaged("no kind"))?;
    let payload = URL_SAFE_NO_PAD.decode(data).map_err(|_| MapError::Damaged("not base64url"))?;
    let mut input = payload.as_slice();
    let map = take_uvarint(&mut input).ok_or(MapError::Damaged("no commit offset"))?;
    let map = i64::try_from(map).map_err(|_| MapError::Damaged("commit offset out of range"))?;
    if map != committed {
        return Err(MapError::Stale { map, committed });
    }
    let ranges = match kind {
        "b" => {
            let mut runs = Runs::default();
            for byte in input {
                for bit in 0..8 {
                    runs.push(byte & (1 << bit) != 0, 1);
                }
            }
            DoneRanges::from_runs(committed, runs.runs)?
        }
        "r" => {
            let mut runs = Vec::new();
            while !input.is_empty() {
                runs.push(take_uvarint(&mut input).ok_or(MapError::Damaged("cut-off run"))?);
            }
            DoneRanges::from_runs(committed, runs)?
        }
        _ => return Err(MapError::Damaged("unknown kind")),
    };
    Ok((!ranges.is_empty()).then_some(ranges))
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn uvarint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(7).max(1)
}

fn take_uvarint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(commit: i64, segments: &[(bool, u64)]) -> String {
        let mut runs = Runs::default();
        segments.iter().for_each(|(done, len)| runs.push(*done, *len));
        runs.encode(commit)
    }

    fn offsets(ranges: &DoneRanges) -> Vec<i64> {
        ranges.from(i64::MIN).flat_map(|(s, e)| s..e).collect()
    }

    #[test]
    fn nothing_done_above_the_commit_is_no_metadata() {
        assert_eq!(map(10, &[]), "");
        assert_eq!(map(10, &[(false, 50)]), "");
        assert_eq!(decode(10, "").unwrap(), None);
    }

    #[test]
    fn maps_round_trip_with_either_encoding() {
        // Scattered: the bitset is shorter. One long done run: the runs are shorter.
        for segments in [
            vec![(false, 1), (true, 2), (false, 1), (true, 1), (false, 3), (true, 1)],
            vec![(false, 1), (true, 100_000)],
            vec![(true, 3), (false, 2), (true, 1)],
        ] {
            let metadata = map(1_000, &segments);
            assert!(metadata.starts_with("ms1"), "{metadata}");
            let mut expected = Vec::new();
            let mut at = 1_000;
            for (done, len) in &segments {
                let len = i64::try_from(*len).unwrap();
                if *done {
                    expected.extend(at..at + len);
                }
                at += len;
            }
            assert_eq!(offsets(&decode(1_000, &metadata).unwrap().unwrap()), expected, "{metadata}");
        }
        assert!(map(5, &[(false, 1), (true, 1), (false, 1), (true, 1)]).starts_with("ms1b"));
        assert!(map(5, &[(false, 1), (true, 100_000)]).starts_with("ms1r"));
    }

    #[test]
    fn a_map_too_large_keeps_its_longest_prefix_and_never_claims_more() {
        let segments: Vec<(bool, u64)> =
            (0..40_000).map(|i| (i % 2 == 1, 1 + (i % 3) as u64 * 200)).collect();
        let metadata = map(0, &segments);
        assert!(metadata.len() <= MAX_METADATA, "{}", metadata.len());
        let decoded = offsets(&decode(0, &metadata).unwrap().unwrap());
        let mut truth = std::collections::BTreeSet::new();
        let mut at = 0;
        for (done, len) in &segments {
            if *done {
                truth.extend(at..at + *len as i64);
            }
            at += *len as i64;
        }
        assert!(!decoded.is_empty());
        assert!(decoded.iter().all(|o| truth.contains(o)), "only done offsets are claimed");
    }

    #[test]
    fn unreadable_or_foreign_or_stale_metadata_is_no_map() {
        assert_eq!(decode(3, "abc"), Err(MapError::Foreign));
        assert!(matches!(decode(3, "ms1b!!"), Err(MapError::Damaged(_))));
        assert!(matches!(decode(3, "ms1x"), Err(MapError::Damaged(_))));
        assert!(matches!(decode(3, "ms1"), Err(MapError::Damaged(_))));
        let metadata = map(3, &[(false, 1), (true, 1)]);
        assert_eq!(decode(4, &metadata), Err(MapError::Stale { map: 3, committed: 4 }));
        // A run that overflows the offsets.
        let mut payload = Vec::new();
        put_uvarint(&mut payload, 3);
        put_uvarint(&mut payload, 1);
        put_uvarint(&mut payload, u64::MAX >> 1);
        assert!(decode(3, &format!("ms1r{}", URL_SAFE_NO_PAD.encode(payload))).is_err());
    }

    #[test]
    fn empty_runs_between_done_runs_join_them() {
        let mut payload = Vec::new();
        [7u64, 0, 3, 0, 2].iter().for_each(|v| put_uvarint(&mut payload, *v));
        let ranges = decode(7, &format!("ms1r{}", URL_SAFE_NO_PAD.encode(payload))).unwrap().unwrap();
        assert_eq!(ranges.from(i64::MIN).collect::<Vec<_>>(), vec![(7, 12)]);
    }

    #[test]
    fn done_ranges_answer_in_order_and_forget_what_they_passed() {
        let mut ranges =
            decode(0, &map(0, &[(false, 2), (true, 3), (false, 1), (true, 1)])).unwrap().unwrap();
        assert_eq!(ranges.len(), 4);
        assert_eq!(
            (0..8).map(|o| ranges.clone().take(o)).collect::<Vec<_>>(),
            [false, false, true, true, true, false, true, false]
        );
        assert!(ranges.take(3));
        assert!(!ranges.take(1), "passed: forgotten");
        assert_eq!(ranges.from(4).collect::<Vec<_>>(), vec![(4, 5), (6, 7)]);
    }
}
