//! `shoal kv scan` and the shell's `scan`: a span given as `START [END]` or
//! `--prefix`, in key order or `--reverse`, pairs or `--keys-only`. Outside a
//! transaction the span is read page by page at one timestamp; JSON lines and bare
//! keys are written as each page comes, a table once it is whole.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use comfy_table::Table;
use shoal_client::{Client, Consistency, KeyValue, Transaction};
use shoal_storage::keys;

use crate::table;
use crate::Format;

#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// First key of the span (inclusive).
    #[arg(required_unless_present = "prefix")]
    pub start: Option<String>,
    /// End of the span (exclusive; omitted: to the end of the key space).
    pub end: Option<String>,
    /// Every key that begins with PREFIX (instead of START and END).
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub prefix: Option<String>,
    /// Descending key order: with --limit N, the last N keys of the span, last first.
    #[arg(long)]
    pub reverse: bool,
    /// The keys alone, one per line (`--format json`: key and version, no value).
    #[arg(long)]
    pub keys_only: bool,
    /// At most this many keys (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// The keys as they were at timestamp TS (default: now, one snapshot).
    #[arg(long, value_name = "TS")]
    pub at: Option<u64>,
}

impl ScanArgs {
    /// The span `[start, end)`; an empty end is the end of the key space.
    pub fn span(&self) -> (Vec<u8>, Vec<u8>) {
        match &self.prefix {
            Some(p) => (p.as_bytes().to_vec(), keys::prefix_end(p.as_bytes())),
            None => (
                self.start.clone().unwrap_or_default().into_bytes(),
                self.end.clone().unwrap_or_default().into_bytes(),
            ),
        }
    }
}

/// Reads the span page by page at one timestamp (the first page's, or `--at`).
pub async fn run(
    client: &Client,
    args: &ScanArgs,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (mut lo, mut hi) = args.span();
    let mut read_ts = args.at.unwrap_or(0);
    let mut left = args.limit;
    let mut p = Printer::new(format, args.keys_only);
    loop {
        let want = if args.limit == 0 {
            0
        } else {
            u32::try_from(left).unwrap_or(u32::MAX)
        };
        let page = client
            .scan_page_at(
                &lo,
                &hi,
                want,
                Consistency::Linearizable,
                args.reverse,
                read_ts,
            )
            .await?;
        read_ts = page.read_ts;
        let take = if args.limit == 0 {
            page.kvs.len()
        } else {
            left.min(page.kvs.len())
        };
        for kv in &page.kvs[..take] {
            p.push(kv, out)?;
        }
        if args.limit != 0 {
            left -= take;
            if left == 0 {
                break;
            }
        }
        if !page.more {
            break;
        }
        if args.reverse {
            hi = page.resume_key;
            if hi <= lo {
                break;
            }
        } else {
            lo = page.resume_key;
            if !hi.is_empty() && lo >= hi {
                break;
            }
        }
    }
    p.finish(out)
}

/// The span as the open transaction `t` sees it.
pub async fn run_in_txn(
    t: &Transaction,
    args: &ScanArgs,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if args.at.is_some() {
        bail!("inside a transaction, reads see its snapshot (no --at)");
    }
    if args.reverse {
        bail!("inside a transaction, scans run in key order (no --reverse)");
    }
    let (lo, hi) = args.span();
    let limit = u32::try_from(args.limit).unwrap_or(u32::MAX);
    let mut p = Printer::new(format, args.keys_only);
    for kv in &t.scan(lo, hi, limit).await? {
        p.push(kv, out)?;
    }
    p.finish(out)
}

/// Where a scan's pairs go: a table of KEY and VALUE (plain), or a line each
/// (JSON, or a bare key with `--keys-only`).
struct Printer {
    format: Format,
    keys_only: bool,
    table: Option<Table>,
}

impl Printer {
    fn new(format: Format, keys_only: bool) -> Self {
        let table = (format == Format::Plain && !keys_only).then(|| table::new(["KEY", "VALUE"]));
        Printer {
            format,
            keys_only,
            table,
        }
    }

    fn push(&mut self, kv: &KeyValue, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(t) = &mut self.table {
            t.add_row([table::cell(&kv.key), table::cell(&kv.value)]);
            return Ok(());
        }
        match (self.format, self.keys_only) {
            (Format::Json, true) => writeln!(
                out,
                "{}",
                serde_json::json!({"key": text(&kv.key), "version": kv.version})
            ),
            (Format::Json, false) => writeln!(out, "{}", kv_json(kv)),
            (Format::Plain, _) => writeln!(out, "{}", table::cell(&kv.key)),
        }
    }

    /// Prints the table (nothing when no key was found).
    fn finish(self, out: &mut dyn Write) -> anyhow::Result<()> {
        if let Some(t) = &self.table {
            if t.row_count() > 0 {
                table::write(t, out)?;
            }
        }
        Ok(())
    }
}

/// A key or value in JSON: a string if it is UTF-8, else `{"hex": ...}`.
pub fn text(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => {
            serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
    }
}

/// A pair in JSON: key, value and version.
pub fn kv_json(kv: &KeyValue) -> serde_json::Value {
    serde_json::json!({"key": text(&kv.key), "value": text(&kv.value), "version": kv.version})
}
