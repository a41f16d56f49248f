//! Key spans `[start, end)`, where an empty `end` is the end of the key space: the one
//! place their arithmetic is written, for the node (descriptors, its range index, its
//! reads) and the SDK (its range cache) alike.

/// Whether `key` falls in `[start, end)`.
pub fn contains(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// Whether the span `[s, e)` falls in `[start, end)`.
pub fn contains_span(start: &[u8], end: &[u8], s: &[u8], e: &[u8]) -> bool {
    s >= start && (end.is_empty() || (!e.is_empty() && e <= end))
}

/// Whether `[start, end)` holds the keys just before `key`, as a scan in descending
/// order ending at `key` reads them (an empty `key`: the last keys of the key space).
pub fn holds_before(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    if key.is_empty() {
        return end.is_empty();
    }
    start < key && (end.is_empty() || key <= end)
}

/// Whether `[s, e)` overlaps `[start, end)`.
pub fn overlaps(start: &[u8], end: &[u8], s: &[u8], e: &[u8]) -> bool {
    (end.is_empty() || s < end) && (e.is_empty() || e > start)
}

/// Whether `key` falls strictly inside `[start, end)`: a key the span can split at.
pub fn splits_at(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    key > start && (end.is_empty() || key < end)
}

/// The smallest key after `key`.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// The part of `[s, e)` inside `[start, end)` (the two must overlap).
pub fn clip<'a>(start: &'a [u8], end: &'a [u8], s: &'a [u8], e: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let lo = if s < start { start } else { s };
    let hi = if end.is_empty() || (!e.is_empty() && e < end) {
        e
    } else {
        end
    };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_end_is_unbounded() {
        assert!(contains(b"b", b"", b"\xff\xff") && !contains(b"b", b"", b"a"));
        assert!(contains(b"b", b"m", b"lzz") && !contains(b"b", b"m", b"m"));
        assert!(contains_span(b"b", b"m", b"b", b"m") && contains_span(b"b", b"m", b"c", b"d"));
        assert!(!contains_span(b"b", b"m", b"c", b"") && !contains_span(b"b", b"m", b"a", b"c"));
        assert!(contains_span(b"b", b"", b"c", b""));
        assert!(overlaps(b"m", b"", b"a", b"") && !overlaps(b"m", b"", b"a", b"m"));
        assert!(overlaps(b"m", b"", b"l", b"n"));
        assert!(
            !splits_at(b"", b"", b"") && splits_at(b"", b"", b"m") && !splits_at(b"a", b"m", b"m")
        );
    }

    #[test]
    fn the_keys_before_a_key_belong_to_the_span_ending_at_or_after_it() {
        assert!(holds_before(b"", b"m", b"m"));
        assert!(!holds_before(b"m", b"", b"m"));
        assert!(holds_before(b"m", b"", b"m\0"));
        assert!(holds_before(b"m", b"", b""));
        assert!(!holds_before(b"", b"m", b""));
        assert_eq!(key_after(b"a"), b"a\0".to_vec());
    }

    #[test]
    fn clipping_keeps_the_part_inside() {
        assert_eq!(clip(b"c", b"m", b"a", b""), (&b"c"[..], &b"m"[..]));
        assert_eq!(clip(b"c", b"", b"d", b"e"), (&b"d"[..], &b"e"[..]));
        assert_eq!(clip(b"c", b"", b"a", b""), (&b"c"[..], &b""[..]));
        assert_eq!(clip(b"", b"m", b"a", b"z"), (&b"a"[..], &b"m"[..]));
    }
}
