//! `shoal sql`: a SQL shell over the Postgres wire protocol (what
//! `kubectl exec -it shoal-0 -- shoal sql` opens): statements span lines until `;`,
//! line editing with a history saved as you go, aligned tables, `\timing`. With `-e`
//! or with statements on stdin (not a terminal) it runs them and exits: 0 when all
//! succeeded, 1 at the first that failed (its SQLSTATE on stderr).

use std::io::{IsTerminal, Read};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use comfy_table::{presets, Table};
use rustyline::error::ReadlineError;
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// The node's SQL server: `host:port` or a URL
    /// (`postgresql://root@host:5432/defaultdb`).
    #[arg(long, env = "SHOAL_SQL_HOST", default_value = "127.0.0.1:5432")]
    host: String,
    /// Run these statements and exit (repeatable; each may hold several).
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    execute: Vec<String>,
    /// Give up connecting after this long (`10s`, `1m`; a bare number is seconds;
    /// Postgres counts it in whole seconds, at least one).
    #[arg(long, env = "SHOAL_TIMEOUT", default_value = "10s",
          value_parser = shoal_server::config::parse_duration)]
    connect_timeout: std::time::Duration,
    /// Certificates directory of a secure cluster: TLS to the node, its certificate
    /// checked against `ca.crt` and the host (as `sslmode=verify-full`), and
    /// `client.USER.crt` presented when the directory holds one; without one, the
    /// user's password (`SHOAL_PASSWORD`, or asked at a terminal).
    #[arg(long, env = "SHOAL_CERTS_DIR")]
    certs_dir: Option<std::path::PathBuf>,
    /// The user to connect as (when `--host` is not a URL naming one).
    #[arg(long, env = "SHOAL_USER", default_value = "root")]
    user: String,
}

fn url(host: &str, user: &str, timeout: std::time::Duration, tls: bool) -> String {
    let timeout = timeout.as_secs().max(1);
    let base = if host.starts_with("postgres://") || host.starts_with("postgresql://") {
        host.to_string()
    } else {
        format!("postgresql://{user}@{host}/defaultdb")
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let ssl = if tls { "&sslmode=require" } else { "" };
    format!("{base}{sep}connect_timeout={timeout}{ssl}")
}

/// What a statement's answer prints as.
fn render(messages: &[SimpleQueryMessage]) -> String {
    let mut out = String::new();
    let mut table: Option<Table> = None;
    let mut rows = 0;
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                let mut t = Table::new();
                t.load_preset(presets::ASCII_FULL_CONDENSED);
                t.set_header(cols.iter().map(|c| c.name().to_string()));
                table = Some(t);
                rows = 0;
            }
            SimpleQueryMessage::Row(row) => {
                let t = table.get_or_insert_with(Table::new);
                t.add_row((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()));
                rows += 1;
            }
            SimpleQueryMessage::CommandComplete(n) => match table.take() {
                Some(t) => {
                    out.push_str(&format!(
                        "{t}\n({rows} row{})\n",
                        if rows == 1 { "" } else { "s" }
                    ));
                }
                None => out.push_str(&format!("OK {n}\n")),
            },
            _ => {}
        }
    }
    out
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => format!("ERROR: {e}"),
    }
}

/// The statements of a script: split at each `;` outside quotes (empty ones dropped).
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        cur.push(c);
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ';' => {
                if !cur.trim().trim_end_matches(';').trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                } else {
                    cur.clear();
                }
            }
            None => {}
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `buf` ends a statement: a `;` at its end outside quotes.
fn complete(buf: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut last = None;
    for c in buf.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
        if !c.is_whitespace() {
            last = Some((c, quote.is_none()));
        }
    }
    matches!(last, Some((';', true)))
}

pub fn run(rt: &tokio::runtime::Runtime, args: SqlArgs) -> anyhow::Result<()> {
    rt.block_on(async {
        let url = url(
            &args.host,
            &args.user,
            args.connect_timeout,
            args.certs_dir.is_some(),
        );
        let connecting = || format!("connecting to the SQL server at {}", args.host);
        let client = match &args.certs_dir {
            Some(dir) => {
                let tls = shoal_client::ClientTls::from_dir(dir, &args.user)?;
                let make = crate::pgtls::MakeRustls {
                    config: tls.config_for(Some(b"postgresql")),
                };
                let mut config: tokio_postgres::Config = url.parse().with_context(connecting)?;
                let user = config.get_user().unwrap_or(&args.user).to_string();
                if let Some(p) = crate::password::login(Some(dir), &user)? {
                    config.password(p);
                }
                let (client, conn) = config.connect(make).await.with_context(connecting)?;
                tokio::spawn(conn);
                client
            }
            None => {
                let (client, conn) = tokio_postgres::connect(&url, NoTls)
                    .await
                    .with_context(connecting)?;
                tokio::spawn(conn);
                client
            }
        };
        let scripted = !args.execute.is_empty() || !std::io::stdin().is_terminal();
        if scripted {
            let mut texts = args.execute.clone();
            if texts.is_empty() {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading statements from stdin")?;
                texts.push(s);
            }
            // One statement at a time: what ran before a failure is printed.
            for t in texts.iter().flat_map(|t| split_statements(t)) {
                match client.simple_query(&t).await {
                    Ok(m) => print!("{}", render(&m)),
                    Err(e) => anyhow::bail!("{}", error_text(&e)),
                }
            }
            return Ok(());
        }
        interactive(&client).await
    })
}

async fn interactive(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".shoal_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("shoal sql: statements end with ';'. \\timing toggles timings, \\q quits.");
    let mut timing = false;
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "shoal> " } else { "   ..> " };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e).context("reading a line"),
        };
        let trimmed = line.trim();
        if buf.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match trimmed {
                "\\q" | "\\quit" => return Ok(()),
                "\\timing" => {
                    timing = !timing;
                    println!("Timing is {}.", if timing { "on" } else { "off" });
                }
                _ => println!("unknown command {trimmed}: \\timing, \\q"),
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        if !complete(&buf) {
            continue;
        }
        let statement = std::mem::take(&mut buf);
        let _ = editor.add_history_entry(statement.trim());
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        let started = Instant::now();
        match client.simple_query(&statement).await {
            Ok(m) => print!("{}", render(&m)),
            Err(e) => eprintln!("{}", error_text(&e)),
        }
        if timing {
            println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes() {
        assert!(complete("SELECT 1;"));
        assert!(complete("SELECT 1;\n  "));
        assert!(!complete("SELECT ';"));
        assert!(complete("SELECT ';';"));
        assert!(!complete("SELECT 1"));
    }

    #[test]
    fn a_script_splits_into_its_statements() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';'  ;\n;SELECT 2"),
            vec!["SELECT 1;", " SELECT ';'  ;", "SELECT 2"]
        );
    }
}
