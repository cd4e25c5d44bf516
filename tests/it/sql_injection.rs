//! SQL comes only from constant strings, and every value (admin filters included) is a bound
//! parameter.
//!
//! Why a source scan suffices: sqlx 0.9's `query`, `query_as`, `query_scalar`, `raw_sql` and
//! `Executor::execute` accept only `impl SqlSafeStr`, which is implemented for `&'static str`
//! (literals, `const`s, `concat!`) and for nothing built at run time unless it is wrapped in
//! `AssertSqlSafe(..)`. The type checker thus forbids `format!`-built SQL except through a
//! handful of spellable escape hatches: `AssertSqlSafe`, `QueryBuilder::push` (takes any
//! `Display`), `copy_in_raw` / `copy_out_raw` (take `&str`), and leaking a `String` into a
//! `&'static str`. None of them may appear in `src/`; a `format!` that spells SQL is refused
//! too, as a second line of defence. (Test code may use `AssertSqlSafe` for its own
//! `create database` / `drop database` housekeeping.)

use std::path::{Path, PathBuf};

use herald::Notification;
use sqlx::PgPool;

use crate::support::{Key, herald, migrated};

const ESCAPE_HATCHES: [&str; 6] = [
    "AssertSqlSafe",
    "QueryBuilder",
    "copy_in_raw",
    "copy_out_raw",
    ".leak()",
    "Box::leak",
];

/// Words that only SQL puts inside a `format!` string in this code base.
const SQL_MARKERS: [&str; 7] = [
    "select ",
    "insert into",
    "delete from",
    "update herald",
    "from herald",
    "into herald",
    "alter table",
];

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Source lines without comments (a doc comment may name what the code must not do).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or_default()))
}

#[test]
fn sql_is_built_only_from_constant_strings() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 40,
        "the scan sees the sources: {}",
        files.len()
    );
    let mut findings = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<(usize, &str)> = code_lines(&text).collect();
        for (i, (number, line)) in lines.iter().enumerate() {
            let at = || format!("{}:{number}", file.display());
            for hatch in ESCAPE_HATCHES {
                if line.contains(hatch) {
                    findings.push(format!("{}: {hatch}", at()));
                }
            }
            if line.contains("format!(") {
                // The format string may start on one of the next lines.
                let window: String = lines[i..(i + 4).min(lines.len())]
                    .iter()
                    .map(|(_, l)| l.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(marker) = SQL_MARKERS.iter().find(|m| window.contains(*m)) {
                    findings.push(format!("{}: format! with SQL ({marker:?})", at()));
                }
            }
        }
    }
    assert!(
        findings.is_empty(),
        "SQL built at run time:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_scan_would_catch_each_escape_hatch() {
    let sample = "let q = sqlx::query(AssertSqlSafe(x));\n// AssertSqlSafe in a comment is fine\n";
    let hits: Vec<_> = code_lines(sample)
        .filter(|(_, line)| ESCAPE_HATCHES.iter().any(|h| line.contains(h)))
        .collect();
    assert_eq!(hits.len(), 1);
    let formatted = "format!(\"select * from herald.notifications where user_id = '{u}'\")";
    assert!(SQL_MARKERS.iter().any(|m| formatted.contains(m)));
}

#[sqlx::test(migrations = false)]
async fn admin_filters_are_bound_parameters(pool: PgPool) {
    let pool = migrated(pool).await;
    let sneaky = "x' or '1'='1";
    for user in ["ann", "bob", sneaky] {
        let n = Notification::email(user, "welcome", "b", "ann@example.com");
        herald::enqueue(&pool, &n).await.unwrap();
    }
    let listed = |args: Vec<&'static str>| {
        let pool = pool.clone();
        async move {
            let mut all = vec!["list", "--json"];
            all.extend(args);
            let out = herald(&pool).args(&all).run().await;
            assert_eq!(out.code, 0, "{out:?}");
            let users: Vec<String> = out
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["user_id"].as_str().unwrap().to_owned())
                .collect();
            users
        }
    };
    // The value matches itself, literally, and nothing else.
    assert_eq!(listed(vec!["--user", "x' or '1'='1"]).await, [sneaky]);
    for flag in ["--type", "--tenant", "--user"] {
        for value in [
            "' or ''='",
            "welcome' --",
            "x'); drop table herald.notifications; --",
        ] {
            assert!(listed(vec![flag, value]).await.is_empty(), "{flag} {value}");
        }
    }
    assert_eq!(
        listed(vec![]).await.len(),
        3,
        "and the table is still there"
    );
    // `explain` looks a key up the same way.
    let out = herald(&pool)
        .explain(&Key::new("' or 1=1 --", "welcome", "b"))
        .arg("--json")
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["held"], false, "{}", out.stdout);
}
