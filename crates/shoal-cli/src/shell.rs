//! The interactive shell of `shoal demo`: line editing and history (rustyline), each
//! line parsed with the same command types as `shoal kv`.

use std::io::Write;

use clap::{Parser, Subcommand};
use rustyline::error::ReadlineError;
use shoal_client::Client;

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

/// Runs the shell until Ctrl-D or `exit`.
pub fn run(rt: &tokio::runtime::Runtime, client: &Client) -> anyhow::Result<()> {
    let mut ed = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".shoal_history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    println!("Type `help` for commands, Ctrl-D to leave.");
    loop {
        let line = match ed.readline("shoal> ") {
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
            ShellCommand::Kv(cmd) => {
                rt.block_on(crate::kv::exec(client, Format::Plain, cmd, &mut out))
            }
        };
        let _ = out.flush();
        if let Err(e) = res {
            eprintln!("error: {e:#}");
        }
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
        assert!(Line::try_parse_from(["frob"]).is_err());
    }
}
