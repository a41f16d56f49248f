//! The kinds of dependency between transactions, and the observation that
//! justifies each edge of the dependency graph.

use std::fmt;

/// A kind of dependency: the first transaction must precede the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// Write-write: the second appended the element right after the first's.
    Ww,
    /// Write-read: the second read a list whose last element the first appended.
    Wr,
    /// Read-write (anti-dependency): the first read a list, and the second appended
    /// the element that follows its end.
    Rw,
    /// Real time: the first completed before the second was invoked.
    Rt,
}

impl Dep {
    /// Every kind, in the order a cycle's edges are preferably named by.
    pub const ALL: [Dep; 4] = [Dep::Ww, Dep::Wr, Dep::Rt, Dep::Rw];

    /// The kind's bit in a set of kinds.
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Dep::Ww => 1,
            Dep::Wr => 2,
            Dep::Rw => 4,
            Dep::Rt => 8,
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dep::Ww => "ww",
            Dep::Wr => "wr",
            Dep::Rw => "rw",
            Dep::Rt => "rt",
        })
    }
}

/// Why one transaction precedes another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// On `key`, `after` (the second's) immediately follows `before` (the first's).
    Ww {
        /// The list.
        key: u64,
        /// The first transaction's element.
        before: u64,
        /// The second transaction's element, next in the list's order.
        after: u64,
    },
    /// The second read `key` as a list ending in `value`, which the first appended.
    Wr {
        /// The list.
        key: u64,
        /// The last element the second read (apart from its own appends).
        value: u64,
    },
    /// The first read `key` as a list ending in `last` (`None`: empty), and the
    /// second appended `next`, the element after that in the list's order.
    Rw {
        /// The list.
        key: u64,
        /// The last element the first read, if any.
        last: Option<u64>,
        /// The element the second appended right after it.
        next: u64,
    },
    /// The first completed at `completed`, before the second was invoked at `invoked`.
    Rt {
        /// When the first completed.
        completed: u64,
        /// When the second was invoked.
        invoked: u64,
    },
}

impl Evidence {
    /// The kind of dependency this shows.
    pub fn dep(&self) -> Dep {
        match self {
            Evidence::Ww { .. } => Dep::Ww,
            Evidence::Wr { .. } => Dep::Wr,
            Evidence::Rw { .. } => Dep::Rw,
            Evidence::Rt { .. } => Dep::Rt,
        }
    }
}
