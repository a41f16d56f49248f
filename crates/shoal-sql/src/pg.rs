//! The Postgres wire protocol (pgwire): a listener whose every connection is a
//! [`Session`], answering the simple and extended query protocols with Postgres'
//! message flow, text and binary formats, and SQLSTATE codes.
//!
//! Startup: on an insecure node user `root`, with no password; on a secure one the
//! user the client certificate names, or without a certificate a user with a
//! password, proved by SCRAM-SHA-256 ([`crate::password`]); a user the cluster has,
//! whose role bounds what the session runs; database `defaultdb` (or none, or the
//! user's name, which libpq sends when none is given). A connection that ends with
//! its transaction open leaves nothing behind: nothing of a transaction reaches the
//! cluster before its commit.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_query_response, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type, DEFAULT_NAME, METADATA_DATABASE,
    METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sqlparser::ast::Statement;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use shoal_proto::role::Role;

use crate::password::{self, PasswordOf, Scram};
pub use crate::wire::wire_type;
use crate::wire::{binary, from_binary, sql_type_of};

use crate::ctx::Output;
use crate::error::{state, SqlError};
use crate::session::{parse, Description, Engine, Session};
use crate::types::{Datum, SqlType};
use crate::{DATABASE, USER};

/// The node's connections by their cancel keys (`BackendKeyData`), which a
/// `CancelRequest` on a new connection names.
#[derive(Default)]
struct Cancels {
    keys: RandomPidSecretKeyGenerator,
    conns: std::sync::Mutex<HashMap<(i32, Bytes), Arc<Conn>>>,
}

impl Cancels {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Arc<Conn>>> {
        // A panic while holding the map leaves it whole: entries are added and removed
        // whole.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let conn = self.conns().get(&key).cloned();
        // An unknown key is ignored, as Postgres does: the asker learns nothing.
        if let Some(conn) = conn {
            conn.shared.statement().cancel();
        }
    }
}

/// A secure node's TLS configuration for its SQL port, as current at each new
/// connection (certificates rotate).
pub type TlsSource = Arc<dyn Fn() -> Arc<tokio_rustls::rustls::ServerConfig> + Send + Sync>;

/// The user a client certificate (its DER, as the handshake verified it) names, and
/// that user's role; or why it may not connect.
pub type WhoIs = Arc<dyn Fn(&[u8]) -> std::result::Result<(String, Role), String> + Send + Sync>;

/// What a secure node's SQL port needs: its TLS configuration, who a client
/// certificate is, and users' passwords.
#[derive(Clone)]
pub struct Secure {
    pub tls: TlsSource,
    pub who_is: WhoIs,
    pub password_of: PasswordOf,
    /// Records a failed login from an address: how long its refusal waits.
    pub failed: Arc<dyn Fn(std::net::IpAddr) -> std::time::Duration + Send + Sync>,
}

/// Serves the Postgres protocol on `listener` until `stop` is cancelled. When
/// `secure`, a connection must ask for TLS (`SSLRequest`, as `sslmode=require` and
/// stronger do) before its startup, and present a certificate of a user the cluster
/// has under the name it logs in as, or prove that user's password; else it is
/// refused (SQLSTATE 28000; a wrong password 28P01).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    secure: Option<Secure>,
    stop: CancellationToken,
) {
    let cancels = Arc::new(Cancels::default());
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a SQL connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let conn = Arc::new(Conn::new(engine.clone()));
        let stop = stop.clone();
        let cancels = cancels.clone();
        let secure = secure.clone();
        tokio::spawn(async move {
            let acceptor = secure
                .as_ref()
                .map(|s| tokio_rustls::TlsAcceptor::from((s.tls)()));
            let handlers = Handlers {
                conn: conn.clone(),
                cancels: cancels.clone(),
                secure,
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                r = pgwire::tokio::process_socket(socket, acceptor, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "a SQL connection ended");
                    }
                }
            }
            if let Some(key) = conn.key.get() {
                cancels.conns().remove(key);
            }
        });
    }
}

/// A connection's session and the cancel token of what it runs, shared by the
/// connection's protocol handlers.
struct Shared {
    session: Mutex<Session>,
    statement: std::sync::Mutex<CancellationToken>,
}

impl Shared {
    /// The token of the running statement.
    fn statement(&self) -> std::sync::MutexGuard<'_, CancellationToken> {
        self.statement.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session, with a fresh cancel token for what it is about to run (a cancel
    /// request that came before touches none of it).
    async fn session(&self) -> tokio::sync::MutexGuard<'_, Session> {
        let mut session = self.session.lock().await;
        let token = CancellationToken::new();
        *self.statement() = token.clone();
        session.set_cancel(token);
        session
    }
}

/// One connection: its session and its cancel key.
pub struct Conn {
    shared: Arc<Shared>,
    parser: Arc<Parser>,
    key: std::sync::OnceLock<(i32, Bytes)>,
}

impl Conn {
    pub fn new(engine: Arc<Engine>) -> Conn {
        let max = engine.max_statement_bytes;
        let shared = Arc::new(Shared {
            session: Mutex::new(Session::new(engine)),
            statement: std::sync::Mutex::new(CancellationToken::new()),
        });
        Conn {
            parser: Arc::new(Parser {
                shared: shared.clone(),
                max_bytes: max,
            }),
            shared,
            key: std::sync::OnceLock::new(),
        }
    }
}

struct Handlers {
    conn: Arc<Conn>,
    cancels: Arc<Cancels>,
    /// A secure node's: a connection must be TLS, its certificate a user's.
    secure: Option<Secure>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.conn.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.conn.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            conn: self.conn.clone(),
            cancels: self.cancels.clone(),
            secure: self.secure.clone(),
            scram: std::sync::Mutex::new(None),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

fn user_error(state: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        state.into(),
        message,
    )))
}

fn pg_error(e: &SqlError) -> PgWireError {
    user_error(e.state, e.message.clone())
}

/// Startup: checks the user (and its certificate or password) and the database,
/// gives the connection its cancel key, then reports the session's parameters.
struct Startup {
    conn: Arc<Conn>,
    cancels: Arc<Cancels>,
    secure: Option<Secure>,
    /// A password exchange under way.
    scram: std::sync::Mutex<Option<Scram>>,
}

struct Parameters {
    user: String,
    application_name: Option<String>,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut p = HashMap::new();
        for (k, v) in [
            ("server_version", crate::SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "postgres"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "on"),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        p.insert("session_authorization".into(), self.user.clone());
        p.insert(
            "application_name".into(),
            self.application_name.clone().unwrap_or_default(),
        );
        Some(p)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let startup = match message {
            PgWireFrontendMessage::Startup(ref startup) => startup,
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                return self.password(client, m).await
            }
            _ => return Ok(()),
        };
        if self.secure.is_some() && !client.is_secure() {
            // As Postgres answers a plaintext connection its pg_hba.conf admits only
            // with hostssl.
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this node takes only TLS connections (sslmode=require or stronger)".into(),
            ))));
        }
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        match &self.secure {
            None if user != USER => {
                return Err(user_error(
                    "28000",
                    format!(
                        "role \"{user}\" does not exist (an insecure node takes only \"{USER}\")"
                    ),
                ));
            }
            None => {}
            Some(secure) => {
                let cert = client
                    .client_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let who = match cert {
                    None => match (secure.password_of)(&user) {
                        Some((verifier, role)) => {
                            *self.scram.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(Scram::Offered { verifier, role });
                            client.set_state(PgWireConnectionState::AuthenticationInProgress);
                            client
                                .send(PgWireBackendMessage::Authentication(password::offer()))
                                .await?;
                            return Ok(());
                        }
                        None => Err(format!(
                            "this node takes SQL from clients with a certificate of its CA, or a password of a user that has one; \"{user}\" has none"
                        )),
                    },
                    Some(cert) => (secure.who_is)(&cert).and_then(|(named, role)| {
                        if named == user {
                            Ok(role)
                        } else {
                            Err(format!(
                                "the client certificate is user \"{named}\"'s, not \"{user}\"'s"
                            ))
                        }
                    }),
                };
                match who {
                    Ok(role) => self.conn.shared.session.lock().await.set_user(&user, role),
                    Err(why) => {
                        tokio::time::sleep((secure.failed)(client.socket_addr().ip())).await;
                        return Err(user_error("28000", why));
                    }
                }
            }
        }
        self.ready(client, user).await
    }
}

impl Startup {
    /// A step of a password exchange; its end readies the session, or refuses it.
    async fn password<C>(&self, client: &mut C, message: PasswordMessageFamily) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (Some(scram), Some(secure)) = (
            self.scram.lock().unwrap_or_else(|e| e.into_inner()).take(),
            &self.secure,
        ) else {
            return Err(user_error(
                "08P01",
                "a password message no exchange asked for".into(),
            ));
        };
        match scram.step(message) {
            Ok(password::Step::Continue(next, scram)) => {
                *self.scram.lock().unwrap_or_else(|e| e.into_inner()) = Some(scram);
                client
                    .send(PgWireBackendMessage::Authentication(next))
                    .await?;
                Ok(())
            }
            Ok(password::Step::Done(last, role)) => {
                client
                    .send(PgWireBackendMessage::Authentication(last))
                    .await?;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                self.conn.shared.session.lock().await.set_user(&user, role);
                self.ready(client, user).await
            }
            Err(e) => {
                tokio::time::sleep((secure.failed)(client.socket_addr().ip())).await;
                // Named as Postgres names it: by the startup's user (SCRAM's own
                // user name is empty in libpq's messages).
                let user = client.metadata().get(METADATA_USER).cloned();
                Err(match e {
                    PgWireError::InvalidPassword(_) => {
                        PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".into(),
                            "28P01".into(),
                            format!(
                                "password authentication failed for user \"{}\"",
                                user.unwrap_or_default()
                            ),
                        )))
                    }
                    e => e,
                })
            }
        }
    }

    /// The user is who it says: checks the database, and readies the session.
    async fn ready<C>(&self, client: &mut C, user: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let db = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_default();
        if !(db.is_empty() || db == DATABASE || db == user) {
            return Err(user_error(
                "3D000",
                format!("database \"{db}\" does not exist (there is one: \"{DATABASE}\")"),
            ));
        }
        let (pid, key) = self.cancels.keys.generate(client);
        let entry = (pid, key.to_bytes());
        if self.conn.key.set(entry.clone()).is_ok() {
            self.cancels.conns().insert(entry, self.conn.clone());
        }
        client.set_pid_and_secret_key(pid, key);
        let params = Parameters {
            user,
            application_name: client.metadata().get("application_name").cloned(),
        };
        finish_authentication(client, &params).await
    }
}

/// A row of an answer as a data row, each column in its format.
fn data_row(
    columns: &[(String, SqlType)],
    row: &[Datum],
    format: &Format,
) -> Result<DataRow, SqlError> {
    let mut data = BytesMut::new();
    for (i, d) in row.iter().enumerate() {
        if d.is_null() {
            data.put_i32(-1);
            continue;
        }
        let at = data.len();
        data.put_i32(0);
        if format.is_binary(i) {
            binary(d, columns[i].1, &mut data)?;
        } else {
            let text = match d {
                Datum::Untyped(s) => s.clone(),
                d => d.to_text().unwrap_or_default(),
            };
            data.put_slice(text.as_bytes());
        }
        let len = (data.len() - at - 4) as i32;
        data[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(DataRow::new(data, row.len() as i16))
}

fn schema(columns: &[(String, SqlType)], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, t))| {
            FieldInfo::new(
                name.clone(),
                None,
                None,
                wire_type(*t),
                format.format_for(i),
            )
        })
        .collect()
}

/// A statement's answer as a protocol response.
fn response(out: Output, format: &Format) -> Result<Response, SqlError> {
    Ok(match out {
        Output::Rows { columns, rows, .. } => {
            let fields = Arc::new(schema(&columns, format));
            let rows = rows
                .iter()
                .map(|r| data_row(&columns, r, format))
                .collect::<Result<Vec<_>, _>>()?;
            Response::Query(QueryResponse::new(
                fields,
                stream::iter(rows.into_iter().map(Ok)),
            ))
        }
        Output::Stream { columns, rows } => {
            // Each row is encoded as it arrives; the connection's next message waits
            // until the last one is sent, and a client gone drops the reading task's
            // channel, which stops it.
            let fields = Arc::new(schema(&columns, format));
            let format = format.clone();
            let rows = stream::unfold(
                rows,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            )
            .map(move |r| {
                r.and_then(|row| data_row(&columns, &row, &format))
                    .map_err(|e| pg_error(&e))
            });
            Response::Query(QueryResponse::new(fields, rows))
        }
        Output::Command { tag, rows } => match (tag.as_str(), rows) {
            ("BEGIN", _) => Response::TransactionStart(Tag::new("BEGIN")),
            ("COMMIT" | "ROLLBACK", _) => Response::TransactionEnd(Tag::new(&tag)),
            ("INSERT", Some(n)) => {
                Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(n as usize))
            }
            (_, Some(n)) => Response::Execution(Tag::new(&tag).with_rows(n as usize)),
            (_, None) => Response::Execution(Tag::new(&tag)),
        },
    })
}

#[async_trait]
impl SimpleQueryHandler for Conn {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (outs, err) = self.shared.session().await.execute(query).await;
        let mut responses = Vec::with_capacity(outs.len() + 1);
        for o in outs {
            responses.push(response(o, &Format::UnifiedText).map_err(|e| pg_error(&e))?);
        }
        if let Some(e) = err {
            responses.push(Response::Error(Box::new(ErrorInfo::new(
                "ERROR".into(),
                e.state.into(),
                e.message,
            ))));
        }
        Ok(responses)
    }
}

/// A prepared statement: parsed, and described against the catalog.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    description: Description,
}

/// Parses and describes the extended protocol's statements in the connection's
/// session.
pub struct Parser {
    shared: Arc<Shared>,
    max_bytes: usize,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parse(sql, self.max_bytes).map_err(|e| pg_error(&e))?;
        if statements.len() > 1 {
            return Err(user_error(
                state::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let description = self
            .shared
            .session()
            .await
            .describe(&statement)
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(Some(Prepared {
            statement,
            description,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .description
            .params
            .iter()
            .map(|t| wire_type(*t))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(schema(
            &stmt.description.columns,
            format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

/// The parameters of a portal as values: each read by the type the client named, or
/// the one the statement's description gave.
fn params(portal: &Portal<Prepared>) -> Result<Vec<Datum>, SqlError> {
    let described = &portal.statement.statement.description.params;
    let named = &portal.statement.parameter_types;
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let Some(bytes) = p else {
                return Ok(Datum::Null);
            };
            let ty = named
                .get(i)
                .and_then(|t| t.as_ref())
                .and_then(sql_type_of)
                .or_else(|| described.get(i).copied());
            if portal.parameter_format.is_binary(i) {
                let ty = ty.ok_or_else(|| {
                    SqlError::new(
                        state::PROTOCOL_VIOLATION,
                        format!(
                            "parameter ${} has no type to read its binary value by",
                            i + 1
                        ),
                    )
                })?;
                return from_binary(bytes, ty);
            }
            let text = std::str::from_utf8(bytes).map_err(|_| {
                SqlError::new(
                    state::PROTOCOL_VIOLATION,
                    format!("parameter ${} is not UTF-8", i + 1),
                )
            })?;
            Ok(match ty {
                Some(SqlType::Text | SqlType::Varchar(_)) | None => {
                    Datum::Untyped(text.to_string())
                }
                Some(t) => Datum::parse(t, text)?,
            })
        })
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for Conn {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// An `Execute` of a query with no row limit streams its rows as they come, as the
    /// simple protocol does (pgwire's own `Execute` reads every row of a portal before
    /// it sends one); the rest goes the default way.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            _ => return self._on_execute(client, message).await,
        };
        let streams = message.max_rows == 0
            && matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && matches!(portal.statement.statement.statement, Statement::Query(_))
            && matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !streams {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let response = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await?;
        *portal.state().lock().await = PortalExecutionState::Finished;
        // `do_query` answers a query with rows, or fails.
        let Response::Query(rows) = response else {
            return Err(PgWireError::ApiError("a query answered no rows".into()));
        };
        send_query_response(client, rows, false).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = params(portal).map_err(|e| pg_error(&e))?;
        let out = self
            .shared
            .session()
            .await
            .run_streamed(&portal.statement.statement.statement, &params)
            .await
            .map_err(|e| pg_error(&e))?;
        response(out, &portal.result_column_format).map_err(|e| pg_error(&e))
    }
}
