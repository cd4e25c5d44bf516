//! Login roles for privilege tests: each test makes its own, granted one of herald's group
//! roles, and drops it at the end. The group roles themselves are cluster-wide and shared:
//! `herald migrate` creates them idempotently and they stay.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::db::url_of;

/// A login role of one test, member of `group`.
pub struct Login {
    pub name: String,
    /// The test database's URL, connecting as this login.
    pub url: String,
}

impl Login {
    /// Creates a login role that is a member of `group` (or of nothing, for `None`).
    pub async fn create(pool: &PgPool, group: Option<&str>) -> Login {
        let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("select pg_catalog.set_config('herald.test_login', $1, false)")
            .bind(&name)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            "do $$ begin execute pg_catalog.format('create role %I login',
                 pg_catalog.current_setting('herald.test_login')); end $$",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        if let Some(group) = group {
            sqlx::query("select pg_catalog.set_config('herald.test_group', $1, false)")
                .bind(group)
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query(
                "do $$ begin execute pg_catalog.format('grant %I to %I',
                     pg_catalog.current_setting('herald.test_group'),
                     pg_catalog.current_setting('herald.test_login')); end $$",
            )
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        let mut url = url::Url::parse(&url_of(pool)).unwrap();
        url.set_username(&name).unwrap();
        Login {
            name,
            url: url.to_string(),
        }
    }

    /// Grants this login `privilege` as the test's superuser: the GRANT up to its `TO`, where
    /// `%2$I` stands for the test's database (`create on schema public`,
    /// `create on database %2$I`).
    pub async fn grant(&self, pool: &PgPool, privilege: &str) {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query(
            "select pg_catalog.set_config('herald.test_login', $1, false),
                    pg_catalog.set_config('herald.test_grant', $2, false)",
        )
        .bind(&self.name)
        .bind(format!("grant {privilege} to %1$I"))
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query(
            "do $$ begin execute pg_catalog.format(pg_catalog.current_setting('herald.test_grant'),
                 pg_catalog.current_setting('herald.test_login'), pg_catalog.current_database());
             end $$",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    /// A pool connecting as this login.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap()
    }

    /// Drops the login (its pools must be closed first).
    pub async fn drop(self, pool: &PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("select pg_catalog.set_config('herald.test_login', $1, false)")
            .bind(&self.name)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            "do $$ begin
                 execute pg_catalog.format('drop owned by %I',
                     pg_catalog.current_setting('herald.test_login'));
                 execute pg_catalog.format('drop role %I',
                     pg_catalog.current_setting('herald.test_login'));
             end $$",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

/// The SQLSTATE of a failed statement, or `"ok"`.
pub fn sqlstate<T>(result: Result<T, sqlx::Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(sqlx::Error::Database(db)) => db.code().unwrap_or_default().into_owned(),
        Err(e) => format!("not a database error: {e}"),
    }
}
