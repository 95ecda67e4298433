//! HTTP `Range` headers for one byte range (RFC 9110 §14.1.2), and what a range selects
//! of a body of known length.

/// One byte range, as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` to `end` (exclusive; `None`: to the end).
    From(u64, Option<u64>),
    /// The last `n` bytes.
    Suffix(u64),
}

/// Parses `bytes=START-END`, `bytes=START-` or `bytes=-N` (one range; whitespace around
/// the numbers tolerated); `None` for anything else, several ranges included.
#[must_use]
pub fn parse(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        // `u64::from_str` takes a leading `+`; a Range never has one.
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => Some(ByteRange::Suffix(num(n)?)),
        (a, "") => Some(ByteRange::From(num(a)?, None)),
        (a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            (b >= a).then(|| ByteRange::From(a, Some(b.saturating_add(1))))
        }
    }
}

/// Why a range selects nothing of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsatisfiable {
    /// `bytes=-0`.
    EmptySuffix,
    /// The range starts at or past the end.
    StartsPastEnd(u64),
}

/// The `(offset, length)` that `range` selects of a body of `size` bytes (the whole body
/// for `None`); a suffix longer than the body is the whole body, an end past it is cut.
///
/// # Errors
/// A range that selects nothing: answered 416 with the body's size.
pub fn resolve(range: Option<ByteRange>, size: u64) -> Result<(u64, u64), Unsatisfiable> {
    match range {
        None => Ok((0, size)),
        Some(ByteRange::Suffix(0)) => Err(Unsatisfiable::EmptySuffix),
        Some(ByteRange::Suffix(n)) => Ok((size.saturating_sub(n), n.min(size))),
        Some(ByteRange::From(start, _)) if start >= size => Err(Unsatisfiable::StartsPastEnd(start)),
        Some(ByteRange::From(start, end)) => Ok((start, end.map_or(size, |e| e.min(size)).saturating_sub(start))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_nothing_else() {
        assert_eq!(parse("bytes=0-99"), Some(ByteRange::From(0, Some(100))));
        assert_eq!(parse(" bytes=5- "), Some(ByteRange::From(5, None)));
        assert_eq!(parse("bytes=-7"), Some(ByteRange::Suffix(7)));
        for bad in ["bytes=9-1", "bytes=0-1,3-4", "items=0-1", "bytes=-", "bytes=a-1", "bytes=+1-2", "bytes=1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_a_range_selects() {
        assert_eq!(resolve(None, 10), Ok((0, 10)));
        assert_eq!(resolve(parse("bytes=2-4"), 10), Ok((2, 3)));
        assert_eq!(resolve(parse("bytes=8-100"), 10), Ok((8, 2)));
        assert_eq!(resolve(parse("bytes=-3"), 10), Ok((7, 3)));
        assert_eq!(resolve(parse("bytes=-30"), 10), Ok((0, 10)));
        assert_eq!(resolve(parse("bytes=10-"), 10), Err(Unsatisfiable::StartsPastEnd(10)));
        assert_eq!(resolve(parse("bytes=-0"), 10), Err(Unsatisfiable::EmptySuffix));
    }

    proptest::proptest! {
        #[test]
        fn a_resolved_range_lies_inside_the_body(s in "bytes=[0-9]{0,4}-[0-9]{0,4}", size in 0u64..10_000) {
            if let Ok((off, len)) = resolve(parse(&s), size) {
                proptest::prop_assert!(off.checked_add(len).is_some_and(|e| e <= size));
            }
        }
    }
}
