//! herald's behaviour against a real PostgreSQL: one test binary, a fresh database per test
//! (`#[sqlx::test]`, which reads `DATABASE_URL` for the server to create them on). The helpers
//! it shares with the chaos suite are the crate in `tests/support`.

use herald_test_support as support;

mod alerts;
mod api_endpoints;
mod api_enqueue;
mod api_explain_stats;
mod api_hardening;
mod api_notifications;
mod api_openapi;
mod breaker_evidence;
mod cli_admin;
mod cli_bench;
mod cli_endpoints;
mod cli_enqueue;
mod cli_errors;
mod cli_read;
mod cli_tokens;
mod dispatch_email;
mod dispatch_email_encoding;
mod dispatch_email_headers;
mod dispatch_leases;
mod dispatch_outage;
mod dispatch_ssrf;
mod dispatch_webhook;
mod enqueue_batch;
mod enqueue_group_commit;
mod enqueue_races;
mod enqueue_semantics;
mod enqueue_sql;
mod enqueue_validation;
mod exact_numbers;
mod fewer_writes;
mod fewer_writes_hostile;
mod hostile_input;
mod input_rules;
mod isolation_breaker;
mod isolation_fairness;
mod migrations;
mod ops_doctor;
mod ops_logs;
mod ops_metrics;
mod ops_metrics_bounds;
mod ops_readiness;
mod privileges;
mod properties;
mod search_path;
mod secrets_in_logs;
mod secrets_in_output;
mod sql_injection;
mod sweeper;
mod upgrade_to_queue;
