//! HTTP endpoints (hyper, HTTP/1): `/healthz` (liveness: the process and its store
//! answer, and no replica stopped for good; never depends on quorum), `/readyz` (the
//! checks of [`crate::lifecycle::readiness`]: initialised, not draining, joined, caught
//! up; `?verbose` lists each), `/metrics` (Prometheus text format), and the SQL API
//! (`POST /db/execute`, `POST /db/query`: `shoal_sql::http`). HTTPS on a secure node
//! (a kubelet's HTTPS probe does not check the certificate).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::lifecycle;
use crate::listen;
use crate::logins::Logins;
use crate::node::Node;
use crate::users::{Role, Users};

/// Serves until the node's shutdown token is cancelled.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    sql: Arc<shoal_sql::Engine>,
    (users, logins): (Arc<Users>, Arc<Logins>),
) -> std::io::Result<()> {
    loop {
        let (stream, from) = tokio::select! {
            _ = node.shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let sql = sql.clone();
        let users = users.clone();
        let logins = logins.clone();
        tokio::spawn(async move {
            match node.tls.clone() {
                Some(tls) => {
                    let Some(conn) =
                        listen::handshake(&tls, listen::Listener::Http, stream, &node.metrics)
                            .await
                    else {
                        return;
                    };
                    let access = match conn.who() {
                        _ if conn.is_plaintext() => Access::TlsRequired,
                        None => Access::ByPassword(users),
                        Some(listen::Who::Node) => {
                            Access::NoSql("a node's certificate is no SQL user's".into())
                        }
                        Some(listen::Who::User(user)) => match users.role_of(user) {
                            Some(role) => Access::Sql(user.clone(), role),
                            None => Access::NoSql(format!("the cluster has no user {user:?}")),
                        },
                    };
                    let failed = Failed {
                        logins,
                        from: from.ip(),
                    };
                    serve_connection(node, sql, conn, access, Some(failed)).await
                }
                None => {
                    let root = Access::Sql(crate::users::ROOT.into(), Role::Admin);
                    serve_connection(node, sql, stream, root, None).await
                }
            }
        });
    }
}

/// What a connection's requests may reach.
#[derive(Debug, Clone)]
enum Access {
    /// Everything, the SQL API as this user with this role: root on an insecure node,
    /// a user of the cluster by its certificate on a secure one.
    Sql(String, Role),
    /// TLS without a user's certificate (and why): the probes and metrics (a kubelet
    /// presents none), not the SQL API.
    NoSql(String),
    /// TLS without a certificate: the probes and metrics, and the SQL API for a
    /// request that names a user with its password (HTTP Basic).
    ByPassword(Arc<Users>),
    /// Plaintext to a secure node: every request is told to use HTTPS.
    TlsRequired,
}

/// Where a secure node's refusals of the SQL API count as failed logins.
#[derive(Clone)]
struct Failed {
    logins: Arc<Logins>,
    from: std::net::IpAddr,
}

/// Serves one connection (plaintext or TLS) until it closes.
async fn serve_connection<IO>(
    node: Arc<Node>,
    sql: Arc<shoal_sql::Engine>,
    io: IO,
    access: Access,
    failed: Option<Failed>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let node = node.clone();
        let sql = sql.clone();
        let access = access.clone();
        let failed = failed.clone();
        async move {
            let to_sql = req.uri().path().starts_with("/db/");
            Ok::<_, Infallible>(match access {
                Access::TlsRequired => text(
                    StatusCode::BAD_REQUEST,
                    "this node speaks HTTPS only\n".into(),
                ),
                Access::Sql(user, role) if to_sql => sql_api(&node, sql, req, (&user, role)).await,
                Access::NoSql(why) if to_sql => {
                    if let Some(f) = failed {
                        tokio::time::sleep(f.logins.failed(Some(f.from), "http")).await;
                    }
                    unauthenticated(&why, "28000")
                }
                Access::ByPassword(users) if to_sql => {
                    let login = match crate::authn::basic_credentials(req.headers()) {
                        Ok(Some((user, password))) => match users.login(&user, &password).await {
                            Ok(role) => Ok((user, role)),
                            Err(why) => Err((why, "28P01")),
                        },
                        Ok(None) => Err((
                            "this node takes SQL from clients with a certificate of its CA, or a user's password (HTTP Basic)".into(),
                            "28000",
                        )),
                        Err(e) => Err((e.to_string(), "28000")),
                    };
                    match login {
                        Ok((user, role)) => sql_api(&node, sql, req, (&user, role)).await,
                        Err((why, state)) => {
                            if let Some(f) = failed {
                                tokio::time::sleep(f.logins.failed(Some(f.from), "http")).await;
                            }
                            unauthenticated(&why, state)
                        }
                    }
                }
                _ => handle(&node, req),
            })
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(error = %e, "HTTP connection");
    }
}

/// The SQL API's answer to a client without a user's certificate or password, or
/// with a wrong password: 401 and SQLSTATE 28000 (28P01), as JSON like its other
/// errors.
fn unauthenticated(why: &str, sqlstate: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": why,
        "sqlstate": sqlstate,
    });
    let mut r = text(StatusCode::UNAUTHORIZED, format!("{body}\n"));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"shoal\""),
    );
    r
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The SQL API: a POST whose body (at most the node's request limit) is a JSON array
/// of statements.
async fn sql_api(
    node: &Node,
    sql: Arc<shoal_sql::Engine>,
    req: Request<Incoming>,
    who: (&str, Role),
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n".into());
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let limit = node.cfg.max_request_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body could not be read within {limit} bytes: {e}\n"),
            )
        }
    };
    match shoal_sql::http::handle(sql, &path, query.as_deref(), &body, who).await {
        Some(a) => {
            let mut r = text(
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                a.body,
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        None => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn handle(node: &Node, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    let verbose = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "verbose"));
    match req.uri().path() {
        "/healthz" | "/livez" => match node.engine.ident() {
            Ok(_) if node.fatal().is_some() => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", node.fatal().unwrap_or_default()),
            ),
            Ok(_) => text(StatusCode::OK, "ok\n".into()),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store does not answer: {e}\n"),
            ),
        },
        "/readyz" => {
            let checks = lifecycle::readiness(node);
            let ready = checks.iter().all(|(_, r)| r.is_ok());
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = if verbose {
                let mut s = String::new();
                for (name, r) in &checks {
                    match r {
                        Ok(()) => s.push_str(&format!("[+] {name} ok\n")),
                        Err(why) => s.push_str(&format!("[-] {name} failed: {why}\n")),
                    }
                }
                s.push_str(if ready { "ready\n" } else { "not ready\n" });
                s
            } else if ready {
                "ok\n".into()
            } else {
                "not ready\n".into()
            };
            text(code, body)
        }
        "/metrics" => {
            let mut r = text(
                StatusCode::OK,
                node.metrics.render(&node.router, node.engine.gc()),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
