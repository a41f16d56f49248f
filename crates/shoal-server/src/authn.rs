//! Who may call what on a secure node's gRPC port. A call must come over a connection
//! whose client presented a certificate of the cluster CA (the handshake verified it:
//! [`crate::listen`]); a node's internal services (`Peer`, `Raft`) take only node
//! certificates, so a client cannot join, vote or move replicas. Refusals are the
//! node's errors (`UNAUTHENTICATED`, `PERMISSION_DENIED`) turned into statuses at the
//! one place errors become statuses. An insecure node checks nothing.

use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tonic::codegen::http;
use tonic::codegen::Service;

use crate::error::Error;
use crate::listen::{ConnInfo, Who};

/// The path prefixes of the internal services.
const INTERNAL: [&str; 2] = ["/shoal.v1.Peer/", "/shoal.v1.Raft/"];

/// Whether the client of `conn` may call `path`.
pub fn check(path: &str, conn: Option<&ConnInfo>) -> Result<(), Error> {
    if conn.is_some_and(|c| c.plaintext) {
        return Err(Error::Unauthenticated(
            "this node speaks TLS only: connect with the cluster's certificates (--certs-dir)"
                .into(),
        ));
    }
    let internal = INTERNAL.iter().any(|p| path.starts_with(p));
    match conn.and_then(|c| c.who.as_ref()) {
        None => Err(Error::Unauthenticated(
            "this node takes calls from clients with a certificate of its CA only (--certs-dir holding client.USER.crt)"
                .into(),
        )),
        Some(Who::User(user)) if internal => Err(Error::PermissionDenied(format!(
            "{path} is a call between nodes; the certificate of user {user:?} is not a node's"
        ))),
        Some(_) => Ok(()),
    }
}

/// The gRPC server's layer that applies [`check`] to every call of a secure node.
#[derive(Debug, Clone, Copy)]
pub struct AuthLayer {
    pub secure: bool,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            secure: self.secure,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    secure: bool,
}

impl<S, B, R> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.secure {
            if let Err(e) = check(req.uri().path(), req.extensions().get::<ConnInfo>()) {
                tracing::debug!(path = req.uri().path(), error = %e, "call refused");
                let status: tonic::Status = e.into();
                return Either::Left(futures::future::ready(Ok(status.into_http())));
            }
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::error::ErrorCode;

    fn conn(who: Option<Who>, plaintext: bool) -> ConnInfo {
        ConnInfo {
            remote: None,
            who,
            plaintext,
        }
    }

    #[test]
    fn clients_need_a_certificate_and_only_nodes_call_the_internal_services() {
        let user = conn(Some(Who::User("app".into())), false);
        let node = conn(Some(Who::Node), false);
        assert!(check("/shoal.v1.Kv/Put", Some(&user)).is_ok());
        assert!(check("/shoal.v1.Kv/Put", Some(&node)).is_ok());
        assert!(check("/shoal.v1.Raft/AppendEntries", Some(&node)).is_ok());
        assert!(check("/shoal.v1.Peer/Join", Some(&node)).is_ok());
        for path in ["/shoal.v1.Raft/Vote", "/shoal.v1.Peer/Join"] {
            let e = check(path, Some(&user)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::PermissionDenied);
        }
        for anonymous in [None, Some(conn(None, false)), Some(conn(None, true))] {
            let e = check("/shoal.v1.Kv/Get", anonymous.as_ref()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Unauthenticated);
        }
        // Plaintext is refused whatever else is known.
        let e = check("/shoal.v1.Kv/Get", Some(&conn(Some(Who::Node), true))).unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
    }
}
