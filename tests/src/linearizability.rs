//! A linearizability checker for histories of one register (one key).
//!
//! Clients record each operation's invocation and completion; an operation that timed
//! out has no completion (it may have taken effect at any point after its invocation,
//! or never). [`check`] searches for a linearization as Wing and Gong do, with Lowe's
//! memoization of (operations already linearized, register state): an order of the
//! operations, consistent with real time (an operation that completed before another
//! was invoked comes first), in which every completed operation's result is what a
//! sequential register would have returned.

use std::collections::HashSet;

/// What an operation did, and what it observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// A read that returned this value (`None`: absent).
    Read(Option<String>),
    Write(String),
    /// Compare-and-set on the value: `from` (`None`: absent) to `to`; `ok` is whether it
    /// reported success.
    Cas {
        from: Option<String>,
        to: String,
        ok: bool,
    },
}

/// One operation: invocation and completion times (any monotonic clock), and its kind.
/// `ret: None` means the outcome is unknown (timeout): such an operation may be
/// linearized after its invocation, or left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub call: u64,
    pub ret: Option<u64>,
    pub kind: OpKind,
}

/// Applies `op` to `state`; `None` if the operation's observed result is impossible
/// from that state.
fn step(state: &Option<String>, op: &OpKind, known: bool) -> Option<Option<String>> {
    match op {
        OpKind::Read(v) => (!known || v == state).then(|| state.clone()),
        OpKind::Write(v) => Some(Some(v.clone())),
        OpKind::Cas { from, to, ok } => {
            let holds = state == from;
            if known && holds != *ok {
                return None;
            }
            // An unknown CAS takes effect exactly when its compare holds.
            Some(if holds {
                Some(to.clone())
            } else {
                state.clone()
            })
        }
    }
}

/// Whether `history` (of one register that starts absent) is linearizable.
pub fn check(history: &[Operation]) -> bool {
    let n = history.len();
    let mut done = vec![false; n];
    let mut seen: HashSet<(Vec<bool>, Option<String>)> = HashSet::new();
    search(history, &mut done, &None, &mut seen)
}

fn search(
    h: &[Operation],
    done: &mut Vec<bool>,
    state: &Option<String>,
    seen: &mut HashSet<(Vec<bool>, Option<String>)>,
) -> bool {
    // Every completed operation linearized: the rest (unknown outcomes) may be left out.
    if h.iter()
        .zip(done.iter())
        .all(|(op, &d)| d || op.ret.is_none())
    {
        return true;
    }
    if !seen.insert((done.clone(), state.clone())) {
        return false;
    }
    // An operation may come next if no pending operation completed before it began.
    let horizon = h
        .iter()
        .zip(done.iter())
        .filter(|(_, &d)| !d)
        .filter_map(|(op, _)| op.ret)
        .min()
        .unwrap_or(u64::MAX);
    for i in 0..h.len() {
        if done[i] || h[i].call > horizon {
            continue;
        }
        if let Some(next) = step(state, &h[i].kind, h[i].ret.is_some()) {
            done[i] = true;
            if search(h, done, &next, seen) {
                return true;
            }
            done[i] = false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, kind: OpKind) -> Operation {
        Operation { call, ret, kind }
    }
    fn w(v: &str) -> OpKind {
        OpKind::Write(v.into())
    }
    fn r(v: Option<&str>) -> OpKind {
        OpKind::Read(v.map(String::from))
    }
    fn cas(from: Option<&str>, to: &str, ok: bool) -> OpKind {
        OpKind::Cas {
            from: from.map(String::from),
            to: to.into(),
            ok,
        }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            op(0, Some(1), r(None)),
            op(2, Some(3), w("a")),
            op(4, Some(5), r(Some("a"))),
            op(6, Some(7), cas(Some("a"), "b", true)),
            op(8, Some(9), cas(Some("a"), "c", false)),
            op(10, Some(11), r(Some("b"))),
        ];
        assert!(check(&h));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let old = [
            op(0, Some(1), w("a")),
            op(2, Some(10), w("b")),
            op(3, Some(4), r(Some("a"))),
        ];
        let new = [
            op(0, Some(1), w("a")),
            op(2, Some(10), w("b")),
            op(3, Some(4), r(Some("b"))),
        ];
        assert!(check(&old) && check(&new));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        let h = [
            op(0, Some(1), w("a")),
            op(2, Some(3), w("b")),
            op(4, Some(5), r(Some("a"))),
        ];
        assert!(!check(&h));
    }

    #[test]
    fn a_lost_acknowledged_write_is_rejected() {
        let h = [op(0, Some(1), w("a")), op(5, Some(6), r(None))];
        assert!(!check(&h));
    }

    #[test]
    fn two_successful_cas_from_the_same_value_are_rejected() {
        let h = [
            op(0, Some(1), w("x")),
            op(2, Some(10), cas(Some("x"), "y", true)),
            op(3, Some(11), cas(Some("x"), "z", true)),
        ];
        assert!(!check(&h));
    }

    #[test]
    fn a_read_must_not_go_back_in_time() {
        // Two reads in real-time order see b then a, with a written before b.
        let h = [
            op(0, Some(1), w("a")),
            op(2, Some(20), w("b")),
            op(3, Some(4), r(Some("b"))),
            op(5, Some(6), r(Some("a"))),
        ];
        assert!(!check(&h));
    }

    #[test]
    fn a_timed_out_write_may_or_may_not_have_happened() {
        let seen = [op(0, None, w("a")), op(5, Some(6), r(Some("a")))];
        let unseen = [op(0, None, w("a")), op(5, Some(6), r(None))];
        assert!(check(&seen) && check(&unseen));
        // But a value nobody wrote is never read.
        let invented = [op(0, None, w("a")), op(5, Some(6), r(Some("zzz")))];
        assert!(!check(&invented));
    }

    #[test]
    fn many_concurrent_operations_check_quickly() {
        // 8 writers and readers interleaved, all overlapping: the memo keeps it fast.
        let mut h = Vec::new();
        for i in 0..8u64 {
            h.push(op(i, Some(100 + i), w(&format!("v{i}"))));
        }
        for i in 0..8u64 {
            h.push(op(200 + i * 2, Some(201 + i * 2), r(Some("v7"))));
        }
        let t = std::time::Instant::now();
        assert!(check(&h));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
