//! Node-level calls to a peer, and the paths they had before they moved from the
//! `Raft` service to the `Peer` service: mid rolling upgrade, nodes of the version
//! before call `/shoal.v1.Raft/<method>` and serve nothing else.
//!
//! - [`call`]: a unary `Peer` call of another node; a node answering UNIMPLEMENTED
//!   (the version before) is asked again at the old path.
//! - [`LegacyPaths`]: a layer of the gRPC server that serves the old paths of the
//!   moved methods as the `Peer` service (their messages did not change).

use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::Service;
use tonic::Code;

use crate::error::{Error, Result};
use crate::node::Node;

/// The `Peer` service's path prefix.
const PEER: &str = "/shoal.v1.Peer/";
/// Where the moved methods were.
const RAFT: &str = "/shoal.v1.Raft/";
/// The methods that moved from `Raft` to `Peer`.
const MOVED: [&str; 8] = [
    "Hello",
    "Bootstrap",
    "Join",
    "AllocRangeId",
    "ReportRanges",
    "CreateReplica",
    "NodeHeartbeat",
    "ChangeReplicas",
];

/// The `Peer` path a request's path stands for, if it is the old path of a moved
/// method.
pub fn moved(path: &str) -> Option<String> {
    let method = path.strip_prefix(RAFT)?;
    MOVED.contains(&method).then(|| format!("{PEER}{method}"))
}

/// Calls `method` of the `Peer` service of the node at `addr` (at its old path on a
/// node of the version before). Its refusal comes back as [`Error::Remote`].
pub async fn call<Req, Resp>(
    node: &Node,
    addr: &str,
    method: &'static str,
    req: Req,
) -> Result<Resp>
where
    Req: prost::Message + Clone + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let ch = node
        .pool
        .channel(addr)
        .map_err(|e| Error::Unavailable(format!("{addr}: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    for prefix in [PEER, RAFT] {
        grpc.ready()
            .await
            .map_err(|e| Error::Unavailable(format!("{addr}: {e}")))?;
        let path = PathAndQuery::try_from(format!("{prefix}{method}"))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        match grpc
            .unary(tonic::Request::new(req.clone()), path, codec)
            .await
        {
            Ok(resp) => return Ok(resp.into_inner()),
            // A node of the version before: the method is at its old path.
            Err(s) if s.code() == Code::Unimplemented && prefix == PEER => continue,
            Err(s) => return Err(Error::Remote(s)),
        }
    }
    Err(Error::Internal(format!("{addr} serves no {method}")))
}

/// The gRPC server's layer that serves the old paths of the moved methods.
#[derive(Debug, Clone, Copy, Default)]
pub struct LegacyPathsLayer;

impl<S> tower_layer::Layer<S> for LegacyPathsLayer {
    type Service = LegacyPaths<S>;

    fn layer(&self, inner: S) -> LegacyPaths<S> {
        LegacyPaths { inner }
    }
}

/// A service that rewrites the old path of a moved method to its `Peer` path.
#[derive(Debug, Clone)]
pub struct LegacyPaths<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for LegacyPaths<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(path) = moved(req.uri().path()) {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = PathAndQuery::try_from(path).ok();
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_paths_of_moved_methods_are_rewritten() {
        assert_eq!(
            moved("/shoal.v1.Raft/NodeHeartbeat").as_deref(),
            Some("/shoal.v1.Peer/NodeHeartbeat")
        );
        assert_eq!(moved("/shoal.v1.Raft/AppendEntries"), None);
        assert_eq!(moved("/shoal.v1.Peer/Hello"), None);
        assert_eq!(moved("/shoal.v1.Kv/Put"), None);
    }
}
