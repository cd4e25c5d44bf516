//! The enqueue functions' refusals, read once: `HR001` (invalid input, naming the field), `HR002`
//! (the key is held by a different intent) and jsonb's own refusals of a payload's text. The
//! library turns them into [`crate::EnqueueError`], the HTTP API into problem documents; both
//! read them here, so the two cannot disagree on what a refusal says.
//!
//! Invariant: anything that is not one of these stays a database error, whatever its text.

use serde::Deserialize;
use sqlx::postgres::PgDatabaseError;
use uuid::Uuid;

/// What a failed enqueue statement said.
#[derive(Debug)]
pub enum Refusal {
    /// Bad input: `field` as the function names it, `message` without the `invalid <field>: `
    /// prefix (a batch's keeps its ` (item N)`: see [`without_item`]).
    Invalid {
        field: String,
        message: String,
        item: Option<usize>,
    },
    /// The key is held by `existing_id`, whose `differs` (`channel`, `destination`, `payload`)
    /// is not the one given; `message` is the function's sentence.
    Conflict {
        existing_id: Uuid,
        differs: String,
        message: String,
        item: Option<usize>,
    },
    /// The database failed or refused for another reason.
    Database(sqlx::Error),
}

#[derive(Deserialize)]
struct Detail {
    existing_id: Option<Uuid>,
    differs: Option<String>,
    item: Option<usize>,
}

/// Reads a refusal out of `error`.
pub fn classify(error: sqlx::Error) -> Refusal {
    let Some(db) = error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
    else {
        return Refusal::Database(error);
    };
    let detail = db
        .detail()
        .and_then(|d| serde_json::from_str::<Detail>(d).ok());
    let item = detail.as_ref().and_then(|d| d.item);
    match db.code() {
        "HR001" => {
            let field = db.column().unwrap_or("input").to_owned();
            let message = db.message();
            let message = message
                .strip_prefix(&format!("invalid {field}: "))
                .unwrap_or(message)
                .to_owned();
            Refusal::Invalid {
                field,
                message,
                item,
            }
        }
        "HR002" => match detail {
            Some(Detail {
                existing_id: Some(existing_id),
                differs: Some(differs),
                item,
            }) => Refusal::Conflict {
                existing_id,
                differs,
                message: db.message().to_owned(),
                item,
            },
            _ => Refusal::Database(error),
        },
        // jsonb refuses what serde_json's syntax check lets through: a lone surrogate escape
        // (22P02), a number past numeric's range such as 1e1000000000 (22003), an escape it
        // cannot store (22P05). The payload is the only value of these statements parsed from
        // text, so these name it.
        "22P02" | "22003" | "22P05" => Refusal::Invalid {
            field: "payload".to_owned(),
            message: format!(
                "PostgreSQL cannot store it: {}{}",
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            item: None,
        },
        _ => Refusal::Database(error),
    }
}

/// A message without the ` (item N)` the functions end a batch item's message with.
pub fn without_item(message: &str) -> &str {
    match message.rfind(" (item ") {
        Some(at) if message.ends_with(')') => &message[..at],
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::without_item;

    #[test]
    fn the_item_suffix_goes_and_nothing_else_does() {
        assert_eq!(
            without_item("invalid type: bad (item 3)"),
            "invalid type: bad"
        );
        assert_eq!(without_item("invalid type: bad"), "invalid type: bad");
        assert_eq!(without_item("invalid type: (x)"), "invalid type: (x)");
    }
}
