//! The catalog queries psql's `\dt` and `\d TABLE` send (PostgreSQL 15's
//! `describe.c`), recognized by their text and answered from shoal's catalog with the
//! columns psql reads. shoal keeps no `pg_catalog` tables: a query of them that is
//! not one of these fails as an unknown table would.

use crate::catalog::Table;
use crate::ctx::{Ctx, Output};
use crate::error::Result;
use crate::types::{Datum, SqlType};

/// One of psql's catalog queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `\dt [pattern]`: the tables.
    ListTables(Option<String>),
    /// `\d NAME`, first step: the tables named so (oid, schema, name).
    FindTable(String),
    /// `\d`: the table's kind and flags.
    TableInfo(u32),
    /// `\d`: its columns.
    Columns(u32),
    /// `\d`: its indexes and their constraints.
    Indexes(u32),
    /// `\d`: policies, statistics, publications, inheritance: none, with this many
    /// columns.
    Nothing(usize),
}

/// The name pattern of `OPERATOR(pg_catalog.~) '^(NAME)$'`, as a LIKE pattern.
fn name_pattern(sql: &str) -> Option<String> {
    let at = sql.find("OPERATOR(pg_catalog.~) '^(")? + "OPERATOR(pg_catalog.~) '^(".len();
    let rest = &sql[at..];
    let end = rest.find(")$'")?;
    Some(rest[..end].replace(".*", "%").replace('.', "_"))
}

/// The oid psql asks about (`c.oid = '16385'`, `a.attrelid = '16385'`, ...).
fn oid(sql: &str, marker: &str) -> Option<u32> {
    let at = sql.find(marker)? + marker.len();
    let rest = sql[at..].trim_start_matches([' ', '\'']);
    rest.split('\'').next()?.trim().parse().ok()
}

/// Which of psql's catalog queries `sql` is, if one.
pub fn recognize(sql: &str) -> Option<Query> {
    if !sql.contains("pg_catalog.") {
        return None;
    }
    if sql.contains("FROM pg_catalog.pg_class c") && sql.contains("c.relkind IN ('r','p'") {
        return Some(Query::ListTables(name_pattern(sql)));
    }
    if sql.trim_start().starts_with("SELECT c.oid,") && sql.contains("OPERATOR(pg_catalog.~)") {
        return Some(Query::FindTable(name_pattern(sql)?));
    }
    if sql
        .trim_start()
        .starts_with("SELECT c.relchecks, c.relkind")
    {
        return Some(Query::TableInfo(oid(sql, "WHERE c.oid =")?));
    }
    if sql.contains("FROM pg_catalog.pg_attribute a") && sql.contains("a.attrelid =") {
        return Some(Query::Columns(oid(sql, "a.attrelid =")?));
    }
    if sql.contains("pg_catalog.pg_index i") && sql.contains("c.oid =") {
        return Some(Query::Indexes(oid(sql, "WHERE c.oid =")?));
    }
    for (marker, columns) in [
        ("FROM pg_catalog.pg_policy pol", 6),
        ("FROM pg_catalog.pg_statistic_ext", 9),
        ("FROM pg_catalog.pg_publication p", 3),
        ("c.oid = i.inhparent", 1),
        ("c.oid = i.inhrelid", 4),
    ] {
        if sql.contains(marker) {
            return Some(Query::Nothing(columns));
        }
    }
    None
}

fn text(s: &str) -> Datum {
    Datum::Text(s.to_string())
}

fn flag(b: bool) -> Datum {
    text(if b { "t" } else { "f" })
}

fn rows(names: &[&str], rows: Vec<Vec<Datum>>) -> Output {
    Output::Rows {
        columns: names
            .iter()
            .map(|n| (n.to_string(), SqlType::Text))
            .collect(),
        rows,
        command: "SELECT",
    }
}

async fn by_oid(ctx: &mut Ctx<'_>, oid: u32) -> Result<Option<Table>> {
    Ok(ctx.tables().await?.into_iter().find(|t| t.id == oid))
}

/// Answers one of psql's catalog queries.
pub async fn answer(ctx: &mut Ctx<'_>, q: &Query) -> Result<Output> {
    let matches = |t: &Table, p: &Option<String>| {
        p.as_ref()
            .is_none_or(|p| crate::eval::like_match(&t.name, p))
    };
    Ok(match q {
        Query::ListTables(p) => {
            let mut found: Vec<Vec<Datum>> = ctx
                .tables()
                .await?
                .into_iter()
                .filter(|t| matches(t, p))
                .map(|t| {
                    vec![
                        text("public"),
                        text(&t.name),
                        text("table"),
                        text(crate::USER),
                    ]
                })
                .collect();
            found.sort_by(|a, b| a[1].sort_cmp(&b[1]));
            rows(&["Schema", "Name", "Type", "Owner"], found)
        }
        Query::FindTable(p) => {
            let found = ctx
                .tables()
                .await?
                .into_iter()
                .filter(|t| matches(t, &Some(p.clone())))
                .map(|t| vec![text(&t.id.to_string()), text("public"), text(&t.name)])
                .collect();
            rows(&["oid", "nspname", "relname"], found)
        }
        Query::TableInfo(oid) => {
            let found = by_oid(ctx, *oid).await?.map(|_| {
                let mut r = vec![text("0"), text("r"), flag(true)];
                r.extend([false, false, false, false, false, false].map(flag));
                r.extend([
                    text(""),
                    text("0"),
                    text(""),
                    text("p"),
                    text("d"),
                    text("heap"),
                ]);
                r
            });
            rows(
                &[
                    "relchecks",
                    "relkind",
                    "relhasindex",
                    "relhasrules",
                    "relhastriggers",
                    "relrowsecurity",
                    "relforcerowsecurity",
                    "relhasoids",
                    "relispartition",
                    "?column?",
                    "reltablespace",
                    "reloftype",
                    "relpersistence",
                    "relreplident",
                    "amname",
                ],
                found.into_iter().collect(),
            )
        }
        Query::Columns(oid) => {
            let found = by_oid(ctx, *oid).await?.map_or_else(Vec::new, |t| {
                t.columns
                    .iter()
                    .map(|c| {
                        vec![
                            text(&c.name),
                            text(&c.ty.name()),
                            c.default_sql.as_deref().map_or(Datum::Null, text),
                            flag(c.not_null),
                            Datum::Null,
                            text(""),
                            text(""),
                        ]
                    })
                    .collect()
            });
            rows(
                &[
                    "attname",
                    "format_type",
                    "pg_get_expr",
                    "attnotnull",
                    "attcollation",
                    "attidentity",
                    "attgenerated",
                ],
                found,
            )
        }
        Query::Indexes(oid) => {
            let mut found = Vec::new();
            if let Some(t) = by_oid(ctx, *oid).await? {
                let cols = |ix: &[usize]| {
                    ix.iter()
                        .map(|&i| t.columns[i].name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let pk = cols(&t.primary_key);
                found.push(vec![
                    text(&format!("{}_pkey", t.name)),
                    flag(true),
                    flag(true),
                    flag(false),
                    flag(true),
                    text(&format!(
                        "CREATE UNIQUE INDEX {}_pkey ON public.{} USING btree ({pk})",
                        t.name, t.name
                    )),
                    text(&format!("PRIMARY KEY ({pk})")),
                    text("p"),
                    flag(false),
                    flag(false),
                    flag(false),
                    text("0"),
                ]);
                let mut others: Vec<Vec<Datum>> = t
                    .indexes
                    .iter()
                    .map(|ix| {
                        let c = cols(&ix.columns);
                        let unique = if ix.unique { "UNIQUE " } else { "" };
                        let from_constraint = ix.unique && ix.name.ends_with("_key");
                        vec![
                            text(&ix.name),
                            flag(false),
                            flag(ix.unique),
                            flag(false),
                            flag(true),
                            text(&format!(
                                "CREATE {unique}INDEX {} ON public.{} USING btree ({c})",
                                ix.name, t.name
                            )),
                            if from_constraint {
                                text(&format!("UNIQUE ({c})"))
                            } else {
                                Datum::Null
                            },
                            if from_constraint {
                                text("u")
                            } else {
                                Datum::Null
                            },
                            if from_constraint {
                                flag(false)
                            } else {
                                Datum::Null
                            },
                            if from_constraint {
                                flag(false)
                            } else {
                                Datum::Null
                            },
                            flag(false),
                            text("0"),
                        ]
                    })
                    .collect();
                others.sort_by(|a, b| a[0].sort_cmp(&b[0]));
                found.extend(others);
            }
            rows(
                &[
                    "relname",
                    "indisprimary",
                    "indisunique",
                    "indisclustered",
                    "indisvalid",
                    "pg_get_indexdef",
                    "pg_get_constraintdef",
                    "contype",
                    "condeferrable",
                    "condeferred",
                    "indisreplident",
                    "reltablespace",
                ],
                found,
            )
        }
        Query::Nothing(n) => {
            let names: Vec<String> = (1..=*n).map(|i| format!("column{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            rows(&names, Vec::new())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psqls_queries_are_recognized() {
        let find = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(t1)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";
        assert_eq!(recognize(find), Some(Query::FindTable("t1".into())));
        let cols = "SELECT a.attname,\n  pg_catalog.format_type(a.atttypid, a.atttypmod)\nFROM pg_catalog.pg_attribute a\nWHERE a.attrelid = '16385' AND a.attnum > 0";
        assert_eq!(recognize(cols), Some(Query::Columns(16385)));
        assert_eq!(recognize("SELECT 1"), None);
    }
}
