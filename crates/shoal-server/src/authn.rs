//! Who may call what on a node's gRPC ports. The peer port serves the internal
//! services (`Peer`, `Raft`); the client port serves clients, and of the internal
//! services only `Peer.Hello`, where a peer asks for the peer port: a client that
//! reaches the client port cannot join, vote or move replicas, secure or not. On a
//! secure node a call must also come over a connection whose client presented a
//! certificate of the cluster CA (the handshake verified it: [`crate::listen`]), and
//! a call on the peer port a node's certificate; a user's certificate names a user
//! the cluster has ([`crate::users`]), whose role allows the call ([`needs`]). A
//! client without a certificate may name its user by password instead, in every
//! call's metadata (`authorization: Basic base64(user:password)`, over TLS only: a
//! plaintext connection is refused before its metadata is read); a certificate, when
//! there is one, is who the client is, and the metadata is not read.
//! Refusals are the node's errors (`UNAUTHENTICATED`, `PERMISSION_DENIED`) turned
//! into statuses at the one place errors become statuses.

use std::task::{Context, Poll};

use futures::future::Either;
use tonic::codegen::http;
use tonic::codegen::Service;

use std::sync::Arc;

use crate::error::Error;
use crate::listen::{ConnInfo, Who};
use crate::logins::Logins;
use crate::users::{Role, Users};

/// The path prefixes of the internal services.
const INTERNAL: [&str; 2] = ["/shoal.v1.Peer/", "/shoal.v1.Raft/"];
/// The internal call a client port answers: where the peer port is.
const HELLO: &str = "/shoal.v1.Peer/Hello";

/// Which of a node's gRPC ports a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Client,
    Peer,
}

/// The role a client call needs: reads and the cluster's state, writes of data, or
/// everything else (a call this version does not list needs an admin).
pub fn needs(path: &str) -> Role {
    const READS: [&str; 12] = [
        "/shoal.v1.Kv/Get",
        "/shoal.v1.Kv/Scan",
        "/shoal.v1.Txn/Timestamps",
        "/shoal.v1.Txn/Begin",
        "/shoal.v1.Txn/Get",
        "/shoal.v1.Txn/Scan",
        "/shoal.v1.Txn/Commit",
        "/shoal.v1.Txn/Rollback",
        "/shoal.v1.Admin/Status",
        "/shoal.v1.Admin/Nodes",
        "/shoal.v1.Admin/Ranges",
        "/shoal.v1.Admin/RangeLookup",
    ];
    const WRITES: [&str; 9] = [
        "/shoal.v1.Kv/Put",
        "/shoal.v1.Kv/Delete",
        "/shoal.v1.Kv/DeleteRange",
        "/shoal.v1.Kv/Batch",
        "/shoal.v1.Kv/Txn",
        "/shoal.v1.Kv/Prewrite",
        "/shoal.v1.Txn/Put",
        "/shoal.v1.Txn/Delete",
        "/shoal.v1.Txn/Finish",
    ];
    if READS.contains(&path) {
        Role::ReadOnly
    } else if WRITES.contains(&path) {
        Role::ReadWrite
    } else {
        Role::Admin
    }
}

/// The user and password of a call's `authorization: Basic` metadata, if it has one
/// (a malformed one is refused).
pub fn basic_credentials(headers: &http::HeaderMap) -> Result<Option<(String, String)>, Error> {
    use base64::Engine;
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        Error::Unauthenticated(
            "the authorization metadata is not \"Basic base64(user:password)\"".into(),
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((user.to_string(), password.to_string())))
}

/// Whether the client of `conn` may call `path` on `port` of a node, secure or not
/// (`users`: the cluster's users, on a secure node; `by_password`: the user a
/// password proved, for a client without a certificate).
pub fn check(
    path: &str,
    conn: Option<&ConnInfo>,
    port: Port,
    users: Option<&Users>,
    by_password: Option<&Who>,
) -> Result<(), Error> {
    let internal = INTERNAL.iter().any(|p| path.starts_with(p));
    if port == Port::Client && internal && path != HELLO {
        return Err(Error::PermissionDenied(format!(
            "{path} is a call between nodes: it goes to the peer port (--peer-addr), not the client port"
        )));
    }
    let Some(users) = users else {
        return Ok(());
    };
    if conn.is_some_and(|c| c.plaintext) {
        return Err(Error::Unauthenticated(
            "this node speaks TLS only: connect with the cluster's certificates (--certs-dir)"
                .into(),
        ));
    }
    match conn.and_then(|c| c.who.as_ref()).or(by_password) {
        None => Err(Error::Unauthenticated(
            "this node takes calls from clients with a certificate of its CA (--certs-dir holding client.USER.crt) or a user's password (--user and SHOAL_PASSWORD)"
                .into(),
        )),
        Some(Who::User(user)) if internal || port == Port::Peer => {
            Err(Error::PermissionDenied(format!(
                "{path} is a call between nodes; the certificate of user {user:?} is not a node's"
            )))
        }
        Some(Who::User(user)) => match users.role_of(user) {
            None => Err(Error::Unauthenticated(format!(
                "the cluster has no user {user:?} (shoal user create {user} --role ROLE)"
            ))),
            Some(role) if role < needs(path) => Err(Error::PermissionDenied(format!(
                "{path} needs the role {}; user {user:?} is {}",
                needs(path).name(),
                role.name()
            ))),
            Some(_) => Ok(()),
        },
        Some(Who::Node) => Ok(()),
    }
}

/// The gRPC server's layer that applies [`check`] to every call of a port; a call
/// refused for its identity counts as a failed login of its source, and waits as
/// [`Logins`] says before its refusal.
#[derive(Clone)]
pub struct AuthLayer {
    pub port: Port,
    /// The cluster's users, on a secure node; `None` on an insecure one.
    pub users: Option<Arc<Users>>,
    pub logins: Arc<Logins>,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            of: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    of: AuthLayer,
}

type Refusal<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

/// The refusal of a call for `e`: a failed login (a refusal for the client's
/// identity, over TLS) waits as [`Logins`] says for its source.
fn refuse<T, E>(
    of: &AuthLayer,
    path: &str,
    conn: Option<&ConnInfo>,
    e: Error,
) -> Refusal<http::Response<T>, E>
where
    T: Default + Send + 'static,
    E: Send + 'static,
{
    tracing::debug!(path, error = %e, "call refused");
    let failed_login = matches!(e, Error::Unauthenticated(_)) && !conn.is_some_and(|c| c.plaintext);
    let wait = if failed_login {
        let from = conn.and_then(|c| c.remote).map(|a| a.ip());
        of.logins.failed(from, "grpc")
    } else {
        std::time::Duration::ZERO
    };
    let status: tonic::Status = e.into();
    Box::pin(async move {
        tokio::time::sleep(wait).await;
        Ok(status.into_http())
    })
}

impl<S, B, R> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Refusal<S::Response, S::Error>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let conn = req.extensions().get::<ConnInfo>();
        let path = req.uri().path().to_string();
        let users = self.of.users.clone();
        // A password counts where a certificate does not speak, over TLS.
        let password = match (&users, conn) {
            (Some(_), Some(c)) if c.who.is_none() && !c.plaintext => {
                match basic_credentials(req.headers()) {
                    Ok(p) => p,
                    Err(e) => return Either::Left(refuse(&self.of, &path, conn, e)),
                }
            }
            _ => None,
        };
        let (Some(users), Some((user, password))) = (users, password) else {
            if let Err(e) = check(&path, conn, self.of.port, self.of.users.as_deref(), None) {
                return Either::Left(refuse(&self.of, &path, conn, e));
            }
            return Either::Right(self.inner.call(req));
        };
        // The service polled ready is the one that serves the call; a clone takes
        // its place for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let of = self.of.clone();
        Either::Left(Box::pin(async move {
            // Answered at once when the password passed before (`Users::login`).
            let answer = users.login(&user, &password).await;
            let conn = req.extensions().get::<ConnInfo>();
            let refusal = match answer {
                Ok(_) => check(&path, conn, of.port, Some(&users), Some(&Who::User(user))),
                Err(why) => Err(Error::Unauthenticated(why)),
            }
            .err()
            .map(|e| refuse(&of, &path, conn, e));
            match refusal {
                Some(refusal) => refusal.await,
                None => inner.call(req).await,
            }
        }))
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
        let users = Users::default();
        let check =
            |path: &str, conn: Option<&ConnInfo>| check(path, conn, Port::Peer, Some(&users), None);
        let user = conn(Some(Who::User("app".into())), false);
        let node = conn(Some(Who::Node), false);
        assert!(check("/shoal.v1.Raft/AppendEntries", Some(&node)).is_ok());
        assert!(check("/shoal.v1.Peer/Join", Some(&node)).is_ok());
        for path in [
            "/shoal.v1.Raft/Vote",
            "/shoal.v1.Peer/Join",
            "/shoal.v1.Kv/Put",
        ] {
            let e = check(path, Some(&user)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::PermissionDenied);
        }
        for anonymous in [None, Some(conn(None, false)), Some(conn(None, true))] {
            let e = check("/shoal.v1.Raft/Vote", anonymous.as_ref()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Unauthenticated);
        }
        // Plaintext is refused whatever else is known.
        let e = check("/shoal.v1.Raft/Vote", Some(&conn(Some(Who::Node), true))).unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
    }

    #[test]
    fn the_client_port_serves_clients_and_no_peer_traffic_but_hello() {
        let user = conn(Some(Who::User("root".into())), false);
        let node = conn(Some(Who::Node), false);
        let known = Users::default();
        for users in [Some(&known), None] {
            let check =
                |path: &str, conn: Option<&ConnInfo>| check(path, conn, Port::Client, users, None);
            assert!(check("/shoal.v1.Kv/Put", Some(&user)).is_ok());
            assert!(check("/shoal.v1.Kv/Put", Some(&node)).is_ok());
            assert!(check(HELLO, Some(&node)).is_ok());
            for path in ["/shoal.v1.Raft/AppendEntries", "/shoal.v1.Peer/Join"] {
                let e = check(path, Some(&node)).unwrap_err();
                assert_eq!(e.code(), ErrorCode::PermissionDenied);
                assert!(e.to_string().contains("--peer-addr"), "{e}");
            }
        }
        let e = check("/shoal.v1.Kv/Get", None, Port::Client, Some(&known), None).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthenticated);
        // An insecure node asks no certificate.
        assert!(check("/shoal.v1.Kv/Get", None, Port::Client, None, None).is_ok());
        assert!(check("/shoal.v1.Raft/Vote", None, Port::Peer, None, None).is_ok());
    }

    #[test]
    fn a_user_calls_what_its_role_allows_and_a_stranger_nothing() {
        assert_eq!(needs("/shoal.v1.Kv/Get"), Role::ReadOnly);
        assert_eq!(needs("/shoal.v1.Admin/RangeLookup"), Role::ReadOnly);
        assert_eq!(needs("/shoal.v1.Txn/Put"), Role::ReadWrite);
        assert_eq!(needs("/shoal.v1.Kv/TxnStep"), Role::Admin);
        assert_eq!(needs("/shoal.v1.Admin/Drain"), Role::Admin);
        assert_eq!(needs("/shoal.v1.Admin/SomethingNew"), Role::Admin);
        let users = Users::default();
        let as_user = |name: &str, path| {
            let c = conn(Some(Who::User(name.into())), false);
            check(path, Some(&c), Port::Client, Some(&users), None).map_err(|e| e.code())
        };
        assert_eq!(as_user("root", "/shoal.v1.Admin/Drain"), Ok(()));
        assert_eq!(
            as_user("ghost", "/shoal.v1.Kv/Get"),
            Err(ErrorCode::Unauthenticated)
        );
        let users = Users::of(&[("reader", Role::ReadOnly), ("writer", Role::ReadWrite)]);
        let as_user = |name: &str, path| {
            let c = conn(Some(Who::User(name.into())), false);
            check(path, Some(&c), Port::Client, Some(&users), None).map_err(|e| e.code())
        };
        assert_eq!(as_user("reader", "/shoal.v1.Kv/Get"), Ok(()));
        assert_eq!(
            as_user("reader", "/shoal.v1.Kv/Put"),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(as_user("writer", "/shoal.v1.Kv/Put"), Ok(()));
        assert_eq!(
            as_user("writer", "/shoal.v1.Admin/SplitRange"),
            Err(ErrorCode::PermissionDenied)
        );
    }
}
