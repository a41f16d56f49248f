//! [`Session`]: one client's connection to the SQL layer: its open transaction (if
//! any), its settings, and how a statement runs: inside the open transaction, or alone
//! in a transaction of its own (autocommit) that the server runs again when it meets a
//! conflict (`40001`), as CockroachDB does for statements it can retry.
//!
//! A transaction block follows Postgres: after an error every statement but `COMMIT`
//! and `ROLLBACK` fails with `25P02`, and `COMMIT` of such a block rolls it back.
//! Nothing of a transaction reaches the cluster before it commits, so a client that
//! goes away mid-transaction leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::role::Role;
use shoal_txn::coordinator::Limits;
use shoal_txn::{Isolation, Options, Ranges, Transaction};
use sqlparser::ast::{self, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use tokio_util::sync::CancellationToken;

use crate::ctx::{Ctx, Output};
use crate::ddl;
use crate::error::{state, Result, SqlError};
use crate::select;
use crate::types::{Datum, SqlType};
use crate::write;

/// How many times an autocommit statement runs again after a conflict.
const AUTOCOMMIT_RETRIES: u32 = 8;

/// The retries of an autocommit statement: at most [`AUTOCOMMIT_RETRIES`], each after a
/// pause that doubles from 5 ms up to 500 ms.
struct Retries {
    attempt: u32,
    backoff: Duration,
}

impl Retries {
    fn new() -> Self {
        Self {
            attempt: 0,
            backoff: Duration::from_millis(5),
        }
    }

    /// Whether `e` may be run again; if so, after the pause.
    async fn again(&mut self, e: &SqlError) -> bool {
        if !e.retriable() || self.attempt >= AUTOCOMMIT_RETRIES {
            return false;
        }
        tracing::debug!(attempt = self.attempt, error = %e, "an autocommit statement runs again");
        self.attempt += 1;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(500));
        true
    }
}

/// What every session of a node shares: the cluster's ranges and the limits.
pub struct Engine {
    pub ranges: Arc<dyn Ranges>,
    pub limits: Limits,
    /// The longest statement text taken, in bytes.
    pub max_statement_bytes: usize,
}

/// Where a session's transaction block stands.
enum Block {
    /// No block: each statement is its own transaction.
    Idle,
    /// `BEGIN` ran; `used`: a statement ran in it since.
    Open { txn: Transaction, used: bool },
    /// A statement of the block failed: it is rolled back, and waits for its end.
    Failed,
}

/// One client's session.
pub struct Session {
    engine: Arc<Engine>,
    /// Who runs the statements, and what they may run.
    user: String,
    role: Role,
    block: Block,
    settings: BTreeMap<String, String>,
    /// The running statement's cancel token: its client's cancel request fires it.
    cancel: CancellationToken,
}

/// Parses `sql` into statements (`42601` on a syntax error; `54000` over the size
/// limit).
pub fn parse(sql: &str, max_bytes: usize) -> Result<Vec<Statement>> {
    if sql.len() > max_bytes {
        return Err(SqlError::new(
            state::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "the statement is {} bytes; the limit is {max_bytes}",
                sql.len()
            ),
        ));
    }
    Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
        SqlError::syntax(format!("syntax error: {msg}"))
    })
}

fn isolation_of(modes: &[ast::TransactionMode]) -> (Option<Isolation>, Option<bool>) {
    let mut iso = None;
    let mut read_only = None;
    for m in modes {
        match m {
            ast::TransactionMode::IsolationLevel(l) => {
                iso = Some(match l {
                    // Postgres' REPEATABLE READ is snapshot isolation; the weaker
                    // levels are run serializable, which is allowed (stronger).
                    ast::TransactionIsolationLevel::RepeatableRead
                    | ast::TransactionIsolationLevel::Snapshot => Isolation::Snapshot,
                    _ => Isolation::Serializable,
                })
            }
            ast::TransactionMode::AccessMode(a) => {
                read_only = Some(*a == ast::TransactionAccessMode::ReadOnly)
            }
        }
    }
    (iso, read_only)
}

/// Whether a statement only reads.
fn reads_only(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowCreate { .. }
    )
}

/// The role a statement needs: reads, transaction control and settings any user
/// may run; writes of rows need `readwrite`; schema changes `admin`.
pub fn needs(s: &Statement) -> Role {
    match s {
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => Role::ReadWrite,
        Statement::CreateTable(_) | Statement::CreateIndex(_) | Statement::Drop { .. } => {
            Role::Admin
        }
        _ => Role::ReadOnly,
    }
}

impl Session {
    /// A session of `root`, an admin: what an insecure node runs.
    pub fn new(engine: Arc<Engine>) -> Session {
        Session::of(engine, "root", Role::Admin)
    }

    /// A session of `user`, who may run what `role` allows.
    pub fn of(engine: Arc<Engine>, user: &str, role: Role) -> Session {
        Session {
            engine,
            user: user.to_string(),
            role,
            block: Block::Idle,
            settings: BTreeMap::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Runs the statements from now on as `user`, with `role`.
    pub fn set_user(&mut self, user: &str, role: Role) {
        self.user = user.to_string();
        self.role = role;
    }

    /// The token that cancels the statements run from now on.
    pub fn set_cancel(&mut self, token: CancellationToken) {
        self.cancel = token;
    }

    async fn begin(&self, opts: Options) -> Result<Transaction> {
        let start_ts = self.engine.ranges.now().await?;
        Ok(Transaction::new(start_ts, opts, self.engine.limits))
    }

    /// Runs every statement of `sql` (the simple query protocol): the outputs of those
    /// that ran, and the error that stopped the rest, if one did.
    pub async fn execute(&mut self, sql: &str) -> (Vec<Output>, Option<SqlError>) {
        if let Some(q) = crate::psql::recognize(sql) {
            return match self.catalog_query(&q).await {
                Ok(o) => (vec![o], None),
                Err(e) => (Vec::new(), Some(e)),
            };
        }
        let statements = match parse(sql, self.engine.max_statement_bytes) {
            Ok(s) => s,
            Err(e) => {
                self.fail_block();
                return (Vec::new(), Some(e));
            }
        };
        let mut outs = Vec::new();
        // A lone query streams its rows; one of several is read whole before the next
        // statement runs.
        let lone = statements.len() == 1;
        for s in &statements {
            let r = if lone {
                self.run_streamed(s, &[]).await
            } else {
                self.run(s, &[]).await
            };
            match r {
                Ok(o) => outs.push(o),
                Err(e) => return (outs, Some(e)),
            }
        }
        (outs, None)
    }

    /// One of psql's catalog queries, read in the open transaction or at a fresh
    /// snapshot.
    async fn catalog_query(&mut self, q: &crate::psql::Query) -> Result<Output> {
        match &mut self.block {
            Block::Open { txn, .. } => {
                let mut ctx = Ctx {
                    txn,
                    ranges: self.engine.ranges.as_ref(),
                    params: &[],
                    cancel: self.cancel.clone(),
                };
                crate::psql::answer(&mut ctx, q).await
            }
            Block::Failed => Err(SqlError::new(
                state::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            Block::Idle => {
                let opts = Options {
                    isolation: Isolation::Serializable,
                    read_only: true,
                };
                let mut txn = self.begin(opts).await?;
                let mut ctx = Ctx {
                    txn: &mut txn,
                    ranges: self.engine.ranges.as_ref(),
                    params: &[],
                    cancel: self.cancel.clone(),
                };
                crate::psql::answer(&mut ctx, q).await
            }
        }
    }

    fn fail_block(&mut self) {
        if !matches!(self.block, Block::Idle) {
            self.block = Block::Failed;
        }
    }

    /// Runs the one statement of `sql`.
    pub async fn run_text(&mut self, sql: &str, params: &[Datum]) -> Result<Output> {
        let list = parse(sql, self.engine.max_statement_bytes)?;
        match list.as_slice() {
            [one] => self.run(one, params).await,
            _ => Err(SqlError::syntax("expected one statement")),
        }
    }

    /// `42501` unless the session's user may run `s`.
    fn allowed(&self, s: &Statement) -> Result<()> {
        let need = needs(s);
        if self.role >= need {
            return Ok(());
        }
        Err(SqlError::new(
            state::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied: user \"{}\" is {}; this statement needs {}",
                self.user,
                self.role.name(),
                need.name()
            ),
        ))
    }

    /// Runs one statement with `params` for its `$n`.
    pub async fn run(&mut self, s: &Statement, params: &[Datum]) -> Result<Output> {
        let r = match self.allowed(s) {
            Ok(()) => self.run_inner(s, params).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.fail_block();
        }
        r
    }

    /// Runs one statement as [`Session::run`] does, except that a query outside a
    /// transaction block (other than a point get, read here) answers
    /// [`Output::Stream`]: its rows are sent as they are read, a page at a time, by a
    /// task that owns the query's read-only transaction (it commits nothing, so it
    /// needs no commit). A conflict before its first row
    /// runs it again, as autocommit does; after it, the stream ends with the error.
    pub async fn run_streamed(&mut self, s: &Statement, params: &[Datum]) -> Result<Output> {
        let Statement::Query(q) = s else {
            return self.run(s, params).await;
        };
        if !matches!(self.block, Block::Idle) {
            return self.run(s, params).await;
        }
        let opts = Options {
            isolation: Isolation::Serializable,
            read_only: true,
        };
        let mut txn = self.begin(opts).await?;
        let ranges = self.engine.ranges.clone();
        let prepared = {
            let mut ctx = Ctx {
                txn: &mut txn,
                ranges: ranges.as_ref(),
                params,
                cancel: self.cancel.clone(),
            };
            let prepared = match select::prepare(&mut ctx, q).await {
                Ok(p) => p,
                Err(e) if e.retriable() => return self.run(s, params).await,
                Err(e) => return Err(e),
            };
            // A point get has nothing to stream: read here, with no task to send it.
            if prepared.reads_one_row() {
                return match select::collect(&mut ctx, &prepared).await {
                    Err(e) if e.retriable() => self.run(s, params).await,
                    done => done,
                };
            }
            prepared
        };
        let columns = prepared.columns().to_vec();
        let (tx, rx) = tokio::sync::mpsc::channel(crate::ctx::PAGE);
        let params = params.to_vec();
        let engine = self.engine.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            let mut retries = Retries::new();
            loop {
                let mut ctx = Ctx {
                    txn: &mut txn,
                    ranges: ranges.as_ref(),
                    params: &params,
                    cancel: cancel.clone(),
                };
                let e = match select::stream(&mut ctx, &prepared, &tx).await {
                    (_, Ok(())) => return,
                    (0, Err(e)) if retries.again(&e).await => match ranges.now().await {
                        Ok(ts) => {
                            txn = Transaction::new(ts, opts, engine.limits);
                            continue;
                        }
                        Err(e) => e.into(),
                    },
                    (_, Err(e)) => e,
                };
                let _ = tx.send(Err(e)).await;
                return;
            }
        });
        Ok(Output::Stream { columns, rows: rx })
    }

    async fn run_inner(&mut self, s: &Statement, params: &[Datum]) -> Result<Output> {
        match s {
            Statement::StartTransaction { modes, .. } => {
                if !matches!(self.block, Block::Idle) {
                    // Postgres warns and goes on.
                    return Ok(Output::command("BEGIN"));
                }
                let (iso, ro) = isolation_of(modes);
                let txn = self
                    .begin(Options {
                        isolation: iso.unwrap_or_default(),
                        read_only: ro.unwrap_or(false),
                    })
                    .await?;
                self.block = Block::Open { txn, used: false };
                return Ok(Output::command("BEGIN"));
            }
            Statement::Commit { .. } => {
                return match std::mem::replace(&mut self.block, Block::Idle) {
                    Block::Open { mut txn, .. } => {
                        txn.commit(self.engine.ranges.clone()).await?;
                        Ok(Output::command("COMMIT"))
                    }
                    Block::Failed => Ok(Output::command("ROLLBACK")),
                    Block::Idle => Ok(Output::command("COMMIT")),
                };
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.block = Block::Idle;
                return Ok(Output::command("ROLLBACK"));
            }
            _ => {}
        }
        if let Block::Failed = self.block {
            return Err(SqlError::new(
                state::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        match s {
            Statement::Set(ast::Set::SetTransaction { modes, .. }) => {
                return self.set_transaction(modes).await;
            }
            Statement::Set(ast::Set::SingleAssignment {
                variable, values, ..
            }) => {
                let v = values
                    .iter()
                    .map(|v| v.to_string().trim_matches('\'').to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.settings.insert(variable.to_string().to_lowercase(), v);
                return Ok(Output::command("SET"));
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                return Ok(self.show(&name));
            }
            _ => {}
        }
        if let Block::Open { txn, used } = &mut self.block {
            *used = true;
            let mut ctx = Ctx {
                txn,
                ranges: self.engine.ranges.as_ref(),
                params,
                cancel: self.cancel.clone(),
            };
            return dispatch(&mut ctx, s).await;
        }
        // Autocommit: the statement in a transaction of its own, run again on conflict.
        let opts = Options {
            isolation: Isolation::Serializable,
            read_only: reads_only(s),
        };
        let mut retries = Retries::new();
        loop {
            let mut txn = self.begin(opts).await?;
            let mut ctx = Ctx {
                txn: &mut txn,
                ranges: self.engine.ranges.as_ref(),
                params,
                cancel: self.cancel.clone(),
            };
            let result = match dispatch(&mut ctx, s).await {
                Ok(out) => txn
                    .commit(self.engine.ranges.clone())
                    .await
                    .map(|_| out)
                    .map_err(SqlError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if retries.again(&e).await => {}
                r => return r,
            }
        }
    }

    async fn set_transaction(&mut self, modes: &[ast::TransactionMode]) -> Result<Output> {
        let (iso, ro) = isolation_of(modes);
        match &mut self.block {
            Block::Open { used: true, .. } => Err(SqlError::new(
                state::ACTIVE_TRANSACTION,
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            )),
            Block::Open { txn, .. } => {
                let old = txn.options();
                let opts = Options {
                    isolation: iso.unwrap_or(old.isolation),
                    read_only: ro.unwrap_or(old.read_only),
                };
                *txn = Transaction::new(txn.start_ts(), opts, self.engine.limits);
                Ok(Output::command("SET"))
            }
            // Outside a block Postgres warns and does nothing.
            _ => Ok(Output::command("SET")),
        }
    }

    fn show(&self, name: &str) -> Output {
        let value = match (name, &self.block) {
            ("transaction isolation level" | "transaction_isolation", Block::Open { txn, .. }) => {
                match txn.options().isolation {
                    Isolation::Serializable => "serializable".to_string(),
                    Isolation::Snapshot => "repeatable read".to_string(),
                }
            }
            ("transaction isolation level" | "transaction_isolation", _) => {
                "serializable".to_string()
            }
            (n, _) => self.settings.get(n).cloned().unwrap_or_else(|| match n {
                "server_version" => crate::SERVER_VERSION.to_string(),
                "timezone" => "UTC".to_string(),
                "datestyle" => "ISO, MDY".to_string(),
                "client_encoding" | "server_encoding" => "UTF8".to_string(),
                "standard_conforming_strings" => "on".to_string(),
                _ => String::new(),
            }),
        };
        Output::Rows {
            columns: vec![(name.replace(' ', "_"), SqlType::Text)],
            rows: vec![vec![Datum::Text(value)]],
            command: "SHOW",
        }
    }
}

/// What a statement answers and takes, without running it: its result columns and the
/// types of its parameters (`$n` whose place tells no type are text).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub columns: Vec<(String, SqlType)>,
    pub params: Vec<SqlType>,
}

impl Session {
    /// Describes a statement (the extended protocol's Parse and Describe), reading the
    /// catalog in the open transaction, or at a fresh snapshot.
    pub async fn describe(&mut self, s: &Statement) -> Result<Description> {
        let control = matches!(
            s,
            Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
        );
        let (columns, params) = match &mut self.block {
            _ if control => (Vec::new(), Vec::new()),
            Block::Failed => return Err(SqlError::new(
                state::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            Block::Open { txn, .. } => {
                let mut ctx = Ctx {
                    txn,
                    ranges: self.engine.ranges.as_ref(),
                    params: &[],
                    cancel: self.cancel.clone(),
                };
                describe_in(&mut ctx, s).await?
            }
            Block::Idle => {
                let mut txn = self
                    .begin(Options {
                        isolation: Isolation::Serializable,
                        read_only: true,
                    })
                    .await?;
                let mut ctx = Ctx {
                    txn: &mut txn,
                    ranges: self.engine.ranges.as_ref(),
                    params: &[],
                    cancel: self.cancel.clone(),
                };
                describe_in(&mut ctx, s).await?
            }
        };
        Ok(Description {
            columns,
            params: params
                .into_iter()
                .map(|p| p.unwrap_or(SqlType::Text))
                .collect(),
        })
    }
}

async fn describe_in(ctx: &mut Ctx<'_>, s: &Statement) -> Result<write::Description> {
    let text = |names: &[&str]| {
        names
            .iter()
            .map(|n| (n.to_string(), SqlType::Text))
            .collect()
    };
    Ok(match s {
        Statement::Query(q) => select::describe(ctx, q).await?,
        Statement::Insert(i) => write::describe_insert(ctx, i).await?,
        Statement::Update(u) => {
            write::describe_change(ctx, &u.table, &u.assignments, &u.selection, &u.returning)
                .await?
        }
        Statement::Delete(d) => match &d.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t)
                if t.len() == 1 =>
            {
                write::describe_change(ctx, &t[0], &[], &d.selection, &d.returning).await?
            }
            _ => (Vec::new(), Vec::new()),
        },
        Statement::Explain { .. } => (text(&["QUERY PLAN"]), Vec::new()),
        Statement::ShowTables { .. } => (text(&["table_name"]), Vec::new()),
        Statement::ShowCreate { .. } => (text(&["table_name", "create_statement"]), Vec::new()),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join("_");
            (vec![(name, SqlType::Text)], Vec::new())
        }
        _ => (Vec::new(), Vec::new()),
    })
}

/// Runs a statement in `ctx`'s transaction.
pub async fn dispatch(ctx: &mut Ctx<'_>, s: &Statement) -> Result<Output> {
    match s {
        Statement::Query(q) => select::query(ctx, q).await,
        Statement::Insert(i) => write::insert(ctx, i).await,
        Statement::Update(u) => write::update(ctx, u).await,
        Statement::Delete(d) => write::delete(ctx, d).await,
        Statement::CreateTable(ct) => ddl::create_table(ctx, ct).await,
        Statement::CreateIndex(ci) => ddl::create_index(ctx, ci).await,
        Statement::Drop {
            object_type: ast::ObjectType::Table,
            if_exists,
            names,
            ..
        } => ddl::drop_tables(ctx, names, *if_exists).await,
        Statement::Explain {
            statement,
            analyze: false,
            ..
        } => crate::explain::explain(ctx, statement).await,
        Statement::ShowTables { .. } => {
            let tables = ctx.tables().await?;
            Ok(Output::Rows {
                columns: vec![("table_name".into(), SqlType::Text)],
                rows: tables
                    .into_iter()
                    .map(|t| vec![Datum::Text(t.name)])
                    .collect(),
                command: "SHOW",
            })
        }
        Statement::ShowCreate {
            obj_type: ast::ShowCreateObject::Table,
            obj_name,
        } => {
            let t = ctx.table(&crate::expr::object_name(obj_name)?).await?;
            Ok(Output::Rows {
                columns: vec![
                    ("table_name".into(), SqlType::Text),
                    ("create_statement".into(), SqlType::Text),
                ],
                rows: vec![vec![
                    Datum::Text(t.name.clone()),
                    Datum::Text(t.create_sql()),
                ]],
                command: "SHOW",
            })
        }
        other => Err(SqlError::unsupported(crate::expr::statement_words(other))),
    }
}
