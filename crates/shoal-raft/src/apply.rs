//! [`Apply`]: what one command's application sees and writes, handed to each
//! command's own function by [`crate::dispatch`]; and [`Effect`], what it changes
//! beyond its writes.

use shoal_storage::{DataBatch, Engine};

use crate::command::CommandResponse;
use crate::range::{Frozen, RangeDescriptor, FIRST_RANGE_ID};
use crate::types::{LogId, StoredMembership};

/// What one command's application sees and writes.
pub struct Apply<'a> {
    pub engine: &'a Engine,
    /// Where the command's writes go; committed with the applied index.
    pub batch: &'a mut DataBatch,
    pub range_id: u64,
    /// The entry's log id.
    pub log_id: LogId,
    /// The range's applied membership.
    pub membership: &'a StoredMembership,
    /// The range's descriptor before the command (`None` on an empty replica, or on a
    /// meta range being founded).
    pub descriptor: Option<&'a RangeDescriptor>,
    /// The commit timestamp of the command's writes (`Command::At`), if it has one.
    pub ts: Option<u64>,
    /// The range's freeze for a merge, if it is frozen: it applies nothing but the
    /// merge's steps.
    pub frozen: Option<Frozen>,
}

impl Apply<'_> {
    pub fn index(&self) -> u64 {
        self.log_id.index
    }

    /// The version of what the command writes: its commit timestamp, or its log index.
    pub fn version(&self) -> u64 {
        self.ts.unwrap_or(self.log_id.index)
    }

    /// Whether this range keeps the cluster's system keys (the meta range).
    pub fn is_meta(&self) -> bool {
        self.range_id == FIRST_RANGE_ID
    }

    /// The largest node id of the range's membership.
    pub fn max_member_id(&self) -> u64 {
        self.membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0)
    }

    /// An empty successful response at this entry.
    pub fn response(&self) -> CommandResponse {
        CommandResponse {
            version: self.version(),
            succeeded: true,
            results: Vec::new(),
        }
    }
}

/// What applying a command changes beyond its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The range split: it keeps `left`; `right` is a new range on the same replicas.
    Split {
        left: RangeDescriptor,
        right: RangeDescriptor,
    },
    /// The range froze for a merge (`Some`), or thawed (`None`).
    Frozen(Option<Frozen>),
    /// The range absorbed its right neighbour `right_id`: it is now `left`.
    Merged {
        left: RangeDescriptor,
        right_id: u64,
    },
}
