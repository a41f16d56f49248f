//! [`NodeRanges`]: how this node reaches the range holding a key, for the steps of
//! transactions (`shoal_txn::resolve::Ranges`): through its own client of the cluster,
//! which routes each step to its range's leader, follows redirects and splits, and
//! sends idempotent steps again after ambiguous failures, as it does any request.

use futures::future::BoxFuture;
use shoal_client::{Client, ClientOptions};
use shoal_raft::codec::{decode, encode};
use shoal_raft::{Command, CommandResponse};
use shoal_txn::resolve::Ranges;

/// The node's way to reach any range.
#[derive(Clone)]
pub struct NodeRanges {
    client: Client,
}

impl NodeRanges {
    /// Reaches the cluster through this node (at `advertise`): it knows the rest.
    pub fn new(advertise: &str) -> std::result::Result<Self, shoal_client::Error> {
        Ok(Self {
            client: Client::with_options([advertise.to_string()], ClientOptions::default())?,
        })
    }
}

impl Ranges for NodeRanges {
    fn step<'a>(
        &'a self,
        key: &'a [u8],
        step: Command,
    ) -> BoxFuture<'a, shoal_txn::Result<CommandResponse>> {
        Box::pin(async move {
            let bytes = encode(&step).map_err(|e| shoal_txn::Error::Internal(e.to_string()))?;
            let answer = self
                .client
                .txn_step(key, bytes)
                .await
                .map_err(|e| shoal_txn::Error::Unavailable(format!("{step}: {e}")))?;
            decode(&answer).map_err(|e| shoal_txn::Error::Internal(format!("{step}: {e}")))
        })
    }
}
