//! The interactive shell of `shoal demo` and `shoal shell` (the one `kubectl exec`
//! opens in a pod): line editing and history (rustyline), each line parsed with the
//! same command types as `shoal kv`. `begin` opens a transaction across ranges: the
//! `get`, `put`, `del` and `scan` that follow go through it, until `commit` or
//! `rollback`. Words are split as a POSIX shell splits them (shlex).
//!
//! With its stdin not a terminal it runs the lines it reads, all of them, and exits
//! with the code of the first that failed (as `shoal` itself would have: 1, 2 for a
//! line that does not parse, 3 for a missing key), 0 when none did.

use std::io::{IsTerminal, Write};

use clap::{Parser, Subcommand};
use rustyline::error::ReadlineError;
use shoal_client::{Client, Isolation, Transaction, TxnOptions};

use crate::kv::{KvCommand, NotFound};
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
  scan START [END] | --prefix P  [--reverse] [--keys-only] [--limit N] [--at TS]
                               list keys in [START, END) or beginning with P
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
Words split as in a POSIX shell: put greeting \"hello world\" (# begins a comment)";

/// Splits a line into words as a POSIX shell does (shlex): whitespace separates,
/// quotes group, backslash escapes, `#` at the start of a word comments out the rest.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    shlex::split(line).ok_or_else(|| "unterminated quote or trailing backslash".to_string())
}

/// Runs one command of the shell inside the open transaction `t`.
async fn in_txn(
    t: &Transaction,
    format: Format,
    cmd: KvCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Get { key, stale, at } => {
            if stale || at.is_some() {
                anyhow::bail!("inside a transaction, reads see its snapshot (no --stale, --at)");
            }
            match t.get(&key).await? {
                Some(kv) if format == Format::Json => {
                    writeln!(out, "{}", crate::scan::kv_json(&kv))?;
                }
                Some(kv) => {
                    out.write_all(&kv.value)?;
                    out.write_all(b"\n")?;
                }
                None => return Err(NotFound(key).into()),
            }
        }
        KvCommand::Put { key, value } => {
            t.put(&key, &value).await?;
            writeln!(out, "OK (at commit)")?;
        }
        KvCommand::Del { key } => {
            if t.get(&key).await?.is_none() {
                return Err(NotFound(key).into());
            }
            t.delete(&key).await?;
            writeln!(out, "deleted (at commit)")?;
        }
        KvCommand::Scan(args) => crate::scan::run_in_txn(t, &args, format, out).await?,
        _ => anyhow::bail!("not inside a transaction: commit or rollback first"),
    }
    Ok(())
}

/// Runs the shell until Ctrl-D or `exit` (an open transaction is rolled back);
/// returns the exit code (see the module's doc).
pub fn run(rt: &tokio::runtime::Runtime, client: &Client, format: Format) -> anyhow::Result<u8> {
    let interactive = std::io::stdin().is_terminal();
    let mut first_failure: Option<u8> = None;
    let mut ed = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".shoal_history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    if interactive {
        println!("Type `help` for commands, Ctrl-D to leave.");
    }
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
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                first_failure.get_or_insert(2);
                continue;
            }
        };
        let parsed = match Line::try_parse_from(&words) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                eprintln!("{}", msg.lines().next().unwrap_or("invalid command"));
                eprintln!("(type `help` for commands)");
                first_failure.get_or_insert(2);
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
            ShellCommand::Nodes => rt.block_on(crate::kv::print_nodes(client, format, &mut out)),
            ShellCommand::Ranges => rt.block_on(crate::kv::print_ranges(client, format, &mut out)),
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
                Some(t) => rt.block_on(in_txn(t, format, cmd, &mut out)),
                None => rt.block_on(crate::kv::exec(client, format, cmd, &mut out)),
            },
        };
        let _ = out.flush();
        if let Err(e) = res {
            eprintln!("error: {e:#}");
            first_failure.get_or_insert(crate::exit_code(&e));
        }
    }
    if let Some(t) = txn {
        let _ = rt.block_on(t.rollback());
    }
    if let Some(h) = &history {
        let _ = ed.save_history(h);
    }
    Ok(if interactive {
        0
    } else {
        first_failure.unwrap_or(0)
    })
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
        assert_eq!(
            split_words("txn --if 'value(a) = 1' --then \"put a 2\"").unwrap(),
            vec!["txn", "--if", "value(a) = 1", "--then", "put a 2"]
        );
        assert_eq!(
            split_words("put k v # a comment").unwrap(),
            vec!["put", "k", "v"]
        );
        assert!(split_words("# only a comment").unwrap().is_empty());
        assert!(split_words("put \"open").is_err());
        assert!(split_words("put k v\\").is_err());
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
        match Line::try_parse_from(["scan", "--prefix", "u/", "--reverse", "--keys-only"])
            .unwrap()
            .cmd
        {
            ShellCommand::Kv(KvCommand::Scan(a)) => {
                assert!(a.reverse && a.keys_only);
                assert_eq!(a.span(), (b"u/".to_vec(), b"u0".to_vec()));
            }
            other => panic!("{other:?}"),
        }
        assert!(Line::try_parse_from(["scan", "a", "--prefix", "u/"]).is_err());
        assert!(Line::try_parse_from(["scan"]).is_err());
        assert!(Line::try_parse_from(["frob"]).is_err());
    }
}
