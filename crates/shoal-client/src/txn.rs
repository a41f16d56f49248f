//! Transactions across ranges, coordinated by the nodes (the `Txn` service); so far
//! the cluster's timestamps.

use shoal_proto::v1 as pb;

use crate::client::{Client, Retry, Route};
use crate::Result;

impl Client {
    /// A timestamp of the cluster's time line, above every timestamp handed out before
    /// this call began (so above the commit of every write acknowledged before it).
    pub async fn timestamp(&self) -> Result<u64> {
        self.timestamps(1).await
    }

    /// A transaction's step in the range holding `key` (the nodes' own wire for
    /// transactions across ranges: `step` and the answer are encodings of the node's
    /// range commands). Steps are idempotent: retried through leader changes.
    #[doc(hidden)]
    pub async fn txn_step(&self, key: &[u8], step: Vec<u8>) -> Result<Vec<u8>> {
        self.run(Route::key(key), Retry::Always, |ch, c| {
            let req = self.request(pb::TxnStepRequest {
                step: step.clone(),
                target: c.map(|c| c.target()),
            });
            async move { Ok(Self::kv(ch).txn_step(req).await?.into_inner().result) }
        })
        .await
    }

    /// The first of `count` consecutive timestamps (1 to 65536).
    pub async fn timestamps(&self, count: u64) -> Result<u64> {
        self.run(Route::Any, Retry::Always, |ch, _| {
            let req = self.request(pb::TxnTimestampsRequest { count });
            async move {
                Ok(Self::txn_service(ch)
                    .timestamps(req)
                    .await?
                    .into_inner()
                    .first)
            }
        })
        .await
    }
}
