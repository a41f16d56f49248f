//! The interactive shell of `shoal demo` and `shoal shell` (the one `kubectl exec`
//! opens in a pod): line editing and history (rustyline), each line parsed with the
//! same command types as `shoal kv`. `begin` opens a transaction across ranges: the
//! `get`, `put`, `del` and `scan` that follow go through it, until `commit` or
//! `rollback`.

use std::io::Write;

use clap::{Parser, Subcommand};
use rustyline::error::ReadlineError;
use shoal_client::{Client, Isolation, Transaction, TxnOptions};

use crate::kv::KvCommand;
use crate::Format;

#[derive(Debug, Parser)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Line {
    #[command(subcommand)]
    cmd: ShellCommand,
}

#[derive(Debug, Subcommand)]
#[command(disable_help_subcommand = true)]
enum ShellCommand {
    #[command(flatten)]
    Kv(KvCommand),
    /// List the cluster's nodes.
    Nodes,
    /// List the cluster's ranges.
    Ranges,
    /// Begin a transaction: get, put, del and scan go through it until commit.
    Begin {
        /// Snapshot isolation (reads not checked at commit) instead of serializable.
        #[arg(long)]
        snapshot: bool,
        /// Refuse writes.
        #[arg(long)]
        read_only: bool,
    },
    /// Commit the open transaction.
    Commit,
    /// Drop the open transaction's writes.
    Rollback,
    /// Show this help.
    Help,
    /// Leave the shell (Ctrl-D does the same).
    #[command(alias = "quit")]
    Exit,
}

const HELP: &str = "\
commands:
  get KEY [--stale | --at TS]  print the value of KEY (at TS: as it was then)
  put KEY VALUE                write VALUE under KEY
  del KEY                      delete KEY
  scan START [END] [--limit N] [--at TS]
                               list keys in [START, END)
  now                          print a timestamp of the cluster's clock
  del-range START [END]        delete keys in [START, END)
  txn --if 'value(k) = v' --then 'put k w' --else 'get k'
  begin [--snapshot] [--read-only]
                               open a transaction across ranges: get, put, del and
                               scan go through it (its snapshot, its writes)
  commit, rollback             end it (a conflict: TXN_CONFLICT, begin again)
  nodes                        list the cluster's nodes
  ranges                       list the ranges: span, epoch, replicas, leader, size
  help, exit (or Ctrl-D)
Quote values with spaces: put greeting \"hello world\"";

/// Splits a line into words: whitespace separates, quotes group, backslash escapes.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err("trailing backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
        if quote.is_some() {
            in_word = true;
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Runs one command of the shell inside the open transaction `t`.
async fn in_txn(t: &Transaction, cmd: KvCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Get { key, stale, at } => {
            if stale || at.is_some() {
                anyhow::bail!("inside a transaction, reads see its snapshot (no --stale, --at)");
            }
            match t.get(&key).await? {
                Some(kv) => {
                    out.write_all(&kv.value)?;
                    out.write_all(b"\n")?;
                }
                None => anyhow::bail!("key {key:?} not found"),
            }
        }
        KvCommand::Put { key, value } => {
            t.put(&key, &value).await?;
            writeln!(out, "OK (at commit)")?;
        }
        KvCommand::Del { key } => {
            if t.get(&key).await?.is_none() {
                anyhow::bail!("key {key:?} not found");
            }
            t.delete(&key).await?;
            writeln!(out, "deleted (at commit)")?;
        }
        KvCommand::Scan {
            start,
            end,
            limit,
            at,
        } => {
            if at.is_some() {
                anyhow::bail!("inside a transaction, reads see its snapshot (no --at)");
            }
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            let kvs = t.scan(&start, end.unwrap_or_default(), limit).await?;
            crate::kv::print_kvs(Format::Plain, &kvs, out)?;
        }
        _ => anyhow::bail!("not inside a transaction: commit or rollback first"),
    }
    Ok(())
}

/// Runs the shell until Ctrl-D or `exit` (an open transaction is rolled back).
pub fn run(rt: &tokio::runtime::Runtime, client: &Client) -> anyhow::Result<()> {
    let mut ed = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".shoal_history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    println!("Type `help` for commands, Ctrl-D to leave.");
    let mut txn: Option<Transaction> = None;
    loop {
        let prompt = if txn.is_some() {
            "shoal(txn)> "
        } else {
            "shoal> "
        };
        let line = match ed.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = ed.add_history_entry(trimmed);
        let words = match split_words(trimmed) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let parsed = match Line::try_parse_from(&words) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                eprintln!("{}", msg.lines().next().unwrap_or("invalid command"));
                eprintln!("(type `help` for commands)");
                continue;
            }
        };
        let mut out = std::io::stdout();
        let res = match parsed.cmd {
            ShellCommand::Exit => break,
            ShellCommand::Help => {
                println!("{HELP}");
                Ok(())
            }
            ShellCommand::Nodes => {
                rt.block_on(crate::kv::print_nodes(client, Format::Plain, &mut out))
            }
            ShellCommand::Ranges => {
                rt.block_on(crate::kv::print_ranges(client, Format::Plain, &mut out))
            }
            ShellCommand::Begin { .. } if txn.is_some() => Err(anyhow::anyhow!(
                "a transaction is open: commit or rollback first"
            )),
            ShellCommand::Begin {
                snapshot,
                read_only,
            } => {
                let opts = TxnOptions {
                    isolation: if snapshot {
                        Isolation::Snapshot
                    } else {
                        Isolation::Serializable
                    },
                    read_only,
                };
                rt.block_on(client.begin_with(opts))
                    .map(|t| {
                        println!("BEGIN (snapshot at {})", t.start_ts());
                        txn = Some(t);
                    })
                    .map_err(Into::into)
            }
            ShellCommand::Commit | ShellCommand::Rollback if txn.is_none() => {
                Err(anyhow::anyhow!("no transaction is open (begin one)"))
            }
            ShellCommand::Commit => {
                let t = txn.take().expect("checked above");
                rt.block_on(t.commit())
                    .map(|ts| println!("COMMIT (version {ts})"))
                    .map_err(Into::into)
            }
            ShellCommand::Rollback => {
                let t = txn.take().expect("checked above");
                rt.block_on(t.rollback())
                    .map(|()| println!("ROLLBACK"))
                    .map_err(Into::into)
            }
            ShellCommand::Kv(cmd) => match &txn {
                Some(t) => rt.block_on(in_txn(t, cmd, &mut out)),
                None => rt.block_on(crate::kv::exec(client, Format::Plain, cmd, &mut out)),
            },
        };
        let _ = out.flush();
        if let Err(e) = res {
            eprintln!("error: {e:#}");
        }
    }
    if let Some(t) = txn {
        let _ = rt.block_on(t.rollback());
    }
    if let Some(h) = &history {
        let _ = ed.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_with_quotes_and_escapes() {
        assert_eq!(
            split_words("put a \"hello world\"").unwrap(),
            vec!["put", "a", "hello world"]
        );
        assert_eq!(
            split_words("put 'x y' z\\ w").unwrap(),
            vec!["put", "x y", "z w"]
        );
        assert_eq!(split_words("put k ''").unwrap(), vec!["put", "k", ""]);
        assert!(split_words("put \"open").is_err());
    }

    #[test]
    fn shell_lines_parse_as_kv_commands() {
        let l = Line::try_parse_from(["get", "k", "--stale"]).unwrap();
        assert!(matches!(
            l.cmd,
            ShellCommand::Kv(KvCommand::Get { stale: true, .. })
        ));
        assert!(matches!(
            Line::try_parse_from(["quit"]).unwrap().cmd,
            ShellCommand::Exit
        ));
        assert!(matches!(
            Line::try_parse_from(["get", "k", "--at", "42"])
                .unwrap()
                .cmd,
            ShellCommand::Kv(KvCommand::Get { at: Some(42), .. })
        ));
        assert!(matches!(
            Line::try_parse_from(["now"]).unwrap().cmd,
            ShellCommand::Kv(KvCommand::Now)
        ));
        assert!(matches!(
            Line::try_parse_from(["begin", "--snapshot"]).unwrap().cmd,
            ShellCommand::Begin {
                snapshot: true,
                read_only: false
            }
        ));
        assert!(matches!(
            Line::try_parse_from(["commit"]).unwrap().cmd,
            ShellCommand::Commit
        ));
        assert!(Line::try_parse_from(["frob"]).is_err());
    }
}
