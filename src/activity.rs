//! What each account did lately: mails sent and refused, mails opened and with what
//! result, the last problem. Counts and reply texts only, never content or
//! subjects; the admin page shows it (issue 6), and it lives in memory, so a
//! restart starts from zero.
//!
//! The proxies record one outcome per mail at the point where the client hears it,
//! so a count here is a reply a client got.

use std::collections::BTreeMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::metrics;

/// Bound on the stored text of a problem (a reply text, an error code and why).
const MAX_PROBLEM_CHARS: usize = 200;

/// The outcomes per account.
#[derive(Debug, Default)]
pub struct Activity {
    accounts: Mutex<BTreeMap<String, AccountActivity>>,
}

/// One account's counts since the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountActivity {
    /// Mails the Fachdienst accepted (250).
    pub sent: u64,
    /// Bytes of those mails as the client sent them.
    pub sent_bytes: u64,
    /// Mails the client was refused (any other reply).
    pub refused: u64,
    /// KIM mails opened on RETR (including ones with the KAS).
    pub opened: u64,
    /// Of those, the ones delivered with a problem: not decrypted, not verified,
    /// or an error mail in their place.
    pub open_problems: u64,
    pub last_sent: Option<OffsetDateTime>,
    pub last_opened: Option<OffsetDateTime>,
    pub last_problem: Option<Problem>,
}

/// The latest thing that went wrong for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: OffsetDateTime,
    pub what: String,
}

impl Activity {
    pub fn new() -> Activity {
        Activity::default()
    }

    fn update(&self, account: &str, f: impl FnOnce(&mut AccountActivity)) {
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(account.to_ascii_lowercase()).or_default());
    }

    /// The reply a client got for a mail of `bytes`.
    pub fn send_outcome(&self, account: &str, code: u16, text: &str, bytes: u64) {
        let now = OffsetDateTime::now_utc();
        let label = account.to_ascii_lowercase();
        if code == 250 {
            metrics::inc("kimcm_mails_sent_total", &[("account", &label)]);
            metrics::add(
                "kimcm_mail_bytes_sent_total",
                &[("account", &label)],
                bytes as f64,
            );
        } else {
            let reason = metrics::reply_reason(code, text);
            metrics::inc(
                "kimcm_mails_refused_total",
                &[("account", &label), ("reason", &reason)],
            );
        }
        self.update(account, |a| {
            if code == 250 {
                a.sent += 1;
                a.sent_bytes += bytes;
                a.last_sent = Some(now);
            } else {
                a.refused += 1;
                a.last_problem = Some(problem(now, format!("send refused: {code} {text}")));
            }
        });
    }

    /// A KIM mail opened on RETR; `problem` is None when it decrypted and verified.
    pub fn opened(&self, account: &str, problem_text: Option<String>) {
        let now = OffsetDateTime::now_utc();
        let result = if problem_text.is_some() {
            "problem"
        } else {
            "ok"
        };
        metrics::inc(
            "kimcm_mails_opened_total",
            &[
                ("account", &account.to_ascii_lowercase()),
                ("result", result),
            ],
        );
        self.update(account, |a| {
            a.opened += 1;
            a.last_opened = Some(now);
            if let Some(p) = problem_text {
                a.open_problems += 1;
                a.last_problem = Some(problem(now, p));
            }
        });
    }

    /// A RETR that could not be answered with a mail.
    pub fn fetch_failed(&self, account: &str, why: &str) {
        let now = OffsetDateTime::now_utc();
        self.update(account, |a| {
            a.last_problem = Some(problem(now, format!("fetch failed: {why}")));
        });
    }

    /// The counts of one account (zero when it did nothing yet).
    pub fn of(&self, account: &str) -> AccountActivity {
        let map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&account.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}

fn problem(at: OffsetDateTime, mut what: String) -> Problem {
    if what.chars().count() > MAX_PROBLEM_CHARS {
        what = what.chars().take(MAX_PROBLEM_CHARS).collect::<String>() + "…";
    }
    Problem { at, what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_account_in_any_case_and_keeps_the_last_problem_short() {
        let a = Activity::new();
        a.send_outcome("Alice@X.kim.test", 250, "2.0.0 ok", 100);
        a.send_outcome("alice@x.kim.test", 250, "2.0.0 ok", 50);
        a.send_outcome("alice@x.kim.test", 552, &"y".repeat(500), 10);
        a.opened("alice@x.kim.test", None);
        a.opened("alice@x.kim.test", Some("decryption 01".into()));
        let got = a.of("ALICE@x.kim.test");
        assert_eq!((got.sent, got.sent_bytes, got.refused), (2, 150, 1));
        assert_eq!((got.opened, got.open_problems), (2, 1));
        assert_eq!(got.last_problem.unwrap().what, "decryption 01");
        assert_eq!(a.of("bob@x.kim.test"), AccountActivity::default());
        a.send_outcome("bob@x.kim.test", 552, &"y".repeat(500), 10);
        let p = a.of("bob@x.kim.test").last_problem.unwrap().what;
        assert!(
            p.starts_with("send refused: 552 yyy") && p.chars().count() == MAX_PROBLEM_CHARS + 1
        );
    }
}
