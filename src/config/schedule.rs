//! The sweeper's cron schedule, validated so that the `cron` crate's surprises cannot bite.
//!
//! The crate wants six fields with seconds first (a crontab's five are refused with only a
//! caret) and counts day-of-week from Sunday = 1, where crontab counts Monday = 1. So: five
//! fields are refused with the six-field expression to use instead, and a numeric day-of-week is
//! refused with the same days written as names (read as crontab means them). Evaluated in UTC.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cron::Schedule;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sweeper.schedule: {0}")]
pub struct ScheduleError(String);

/// Parses and checks a schedule.
pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
    let expression = expression.trim();
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !expression.starts_with('@') {
        if fields.len() == 5 {
            let mut six = vec!["0"];
            six.extend(&fields);
            let corrected = with_named_days(&six, 5).unwrap_or_else(|| six.join(" "));
            return Err(ScheduleError(format!(
                "{expression:?} has 5 fields, but herald's cron has 6 with seconds first \
                 (sec min hour day-of-month month day-of-week); use {corrected:?}"
            )));
        }
        if (6..=7).contains(&fields.len())
            && fields[5].chars().any(|c| c.is_ascii_digit())
            && let Some(corrected) = with_named_days(&fields, 5)
        {
            return Err(ScheduleError(format!(
                "day-of-week {:?} is numeric, which is ambiguous: this cron counts Sunday = 1 where \
                 crontab counts Monday = 1; write names instead: {corrected:?}",
                fields[5]
            )));
        }
    }
    let schedule = Schedule::from_str(expression).map_err(|e| {
        // The crate's message repeats the expression and draws a caret under it; keep the
        // sentence that says what is wrong.
        let text = e.to_string();
        let reason = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && *l != "^")
            .unwrap_or("invalid");
        ScheduleError(format!(
            "{expression:?} is not a valid cron expression: {reason}"
        ))
    })?;
    if schedule.upcoming(Utc).next().is_none() {
        return Err(ScheduleError(format!("{expression:?} never fires again")));
    }
    Ok(schedule)
}

/// The next `n` fire times after now, in UTC.
pub fn next_fires(schedule: &Schedule, n: usize) -> Vec<DateTime<Utc>> {
    schedule.upcoming(Utc).take(n).collect()
}

const CRONTAB_DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// `fields` with its day-of-week field's numbers (crontab meaning: 0 or 7 Sunday, 1 Monday, …)
/// written as names; steps (`*/2`) stay numbers. None when a number is out of range.
fn with_named_days(fields: &[&str], at: usize) -> Option<String> {
    let day = |text: &str| -> Option<String> {
        match text.parse::<usize>() {
            Ok(n) => CRONTAB_DAYS.get(n).map(|d| d.to_string()),
            Err(_) => Some(text.to_owned()),
        }
    };
    let mut parts = Vec::new();
    for item in fields[at].split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let named = range
            .split('-')
            .map(day)
            .collect::<Option<Vec<_>>>()?
            .join("-");
        parts.push(match step {
            Some(step) => format!("{named}/{step}"),
            None => named,
        });
    }
    let mut out: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    out[at] = parts.join(",");
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    #[test]
    fn six_and_seven_fields_and_macros_are_accepted() {
        for ok in [
            "0 */10 * * * *",
            "0 0 3 * * MON-FRI",
            "0 0 3 * * * 2099",
            "@daily",
            "0 30 2 ? * SUN",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn five_fields_are_refused_with_the_six_field_form() {
        let err = parse("*/5 * * * *").unwrap_err().to_string();
        assert_eq!(
            err,
            "sweeper.schedule: \"*/5 * * * *\" has 5 fields, but herald's cron has 6 with seconds first \
             (sec min hour day-of-month month day-of-week); use \"0 */5 * * * *\""
        );
        let err = parse("30 2 * * 1-5").unwrap_err().to_string();
        assert!(err.ends_with("use \"0 30 2 * * MON-FRI\""), "{err}");
    }

    #[test]
    fn numeric_days_of_week_are_refused_with_names() {
        let err = parse("0 0 9 * * 1-5").unwrap_err().to_string();
        assert!(err.contains("day-of-week \"1-5\" is numeric"), "{err}");
        assert!(
            err.ends_with("write names instead: \"0 0 9 * * MON-FRI\""),
            "{err}"
        );
        let err = parse("0 0 9 * * 0,6").unwrap_err().to_string();
        assert!(err.ends_with("\"0 0 9 * * SUN,SAT\""), "{err}");
        let err = parse("0 0 9 * * */2").unwrap_err().to_string();
        assert!(
            err.ends_with("\"0 0 9 * * */2\""),
            "a step stays a number: {err}"
        );
    }

    #[test]
    fn named_days_mean_what_they_say() {
        let schedule = parse("0 0 9 * * MON-FRI").unwrap();
        for fire in next_fires(&schedule, 10) {
            assert!(
                !matches!(fire.weekday(), Weekday::Sat | Weekday::Sun),
                "{fire}"
            );
            assert_eq!((fire.hour(), fire.minute(), fire.second()), (9, 0, 0));
        }
    }

    #[test]
    fn garbage_is_one_clear_line() {
        let err = parse("every ten minutes").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "sweeper.schedule: \"every ten minutes\" is not a valid cron expression: "
            ),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        assert!(
            parse("0 0 0 1 1 * 2001")
                .unwrap_err()
                .to_string()
                .contains("never fires")
        );
    }

    #[test]
    fn next_fires_are_in_order_and_in_the_future() {
        let fires = next_fires(&parse("0 */10 * * * *").unwrap(), 3);
        assert_eq!(fires.len(), 3);
        assert!(fires[0] > Utc::now() && fires[0] < fires[1] && fires[1] < fires[2]);
        assert_eq!(fires[1] - fires[0], chrono::Duration::minutes(10));
    }
}
