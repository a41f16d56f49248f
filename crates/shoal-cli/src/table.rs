//! The aligned tables of the plain output format (comfy-table): columns under an
//! upper-case header, separated by spaces, as kubectl and docker print theirs.

use std::io::Write;

use comfy_table::{presets, Table};

/// A table with these column names.
pub fn new<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header);
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t
}

/// Writes `t`, each line without trailing spaces.
pub fn write(t: &Table, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}", t.trim_fmt())
}

/// Bytes as a table cell: printable UTF-8 as it is; anything else (bytes that are not
/// UTF-8, control characters such as a newline) escaped, so a row stays one line
/// (`\xff`, `\n`; `--format json` gives the bytes exactly).
pub fn cell(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        Ok(s) => s
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
        Err(_) => b.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_under_the_header() {
        let mut t = new(["KEY", "VALUE"]);
        t.add_row(["a", "1"]);
        t.add_row(["greeting", "hello world"]);
        let mut out = Vec::new();
        write(&t, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "KEY       VALUE\na         1\ngreeting  hello world\n"
        );
    }

    #[test]
    fn cells_escape_what_would_break_a_row() {
        assert_eq!(cell(b"hello world"), "hello world");
        assert_eq!(cell("héllo".as_bytes()), "héllo");
        assert_eq!(cell(b"two\nlines"), "two\\nlines");
        assert_eq!(cell("é\t".as_bytes()), "é\\t");
        assert_eq!(cell(&[0xff, b'a']), "\\xffa");
    }
}
