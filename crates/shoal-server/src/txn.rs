//! The public `Txn` gRPC service: transactions across ranges, coordinated by this
//! node for its clients. So far it hands out the cluster's timestamps.

use shoal_proto::v1::{self as pb, txn_server::Txn};
use tonic::{Request, Response, Status};

use crate::clock::Clock;

pub struct TxnService {
    clock: Clock,
}

impl TxnService {
    pub fn new(clock: Clock) -> Self {
        Self { clock }
    }
}

#[tonic::async_trait]
impl Txn for TxnService {
    async fn timestamps(
        &self,
        req: Request<pb::TxnTimestampsRequest>,
    ) -> Result<Response<pb::TxnTimestampsResponse>, Status> {
        let count = req.into_inner().count;
        self.clock
            .take(count)
            .await
            .map(|first| Response::new(pb::TxnTimestampsResponse { first: first.0 }))
            .map_err(Status::from)
    }
}
