//! A report as CareFlex takes it: the checked incidents grouped by CareFlex ID
//! (one ID per report, the vendor says) in the order they first appear, each
//! group sent in requests of at most [`MAX_BATCH`] incidents, one after the
//! other. Each request gets its own importId, and each is stored before the
//! next goes out. The first request that fails ends the run: the ones before
//! it are imported and must not be sent again, the rest are named.
//!
//! And the month of an empty report (`NoIncidentRequest` has only a
//! `createdAt` date): today for the running month, the month's last day for a
//! past one; a month not yet begun is refused.

use std::ops::RangeInclusive;

use time::{Date, Month, OffsetDateTime};

use super::client::{CareflexClient, CareflexError, Imported, MAX_BATCH};
use super::config::CareflexConfig;
use super::imports;
use super::input::{Incident, Problem};
use crate::store::Store;

/// The time zone CareFlex's dates are in (Germany).
pub const TIME_ZONE: &str = "Europe/Berlin";

/// The incidents of one CareFlex ID.
#[derive(Debug, Clone)]
pub struct Report {
    pub careflex_id: String,
    pub incidents: Vec<Incident>,
}

impl Report {
    /// The requests it takes.
    pub fn requests(&self) -> usize {
        self.incidents.len().div_ceil(MAX_BATCH)
    }
}

/// Groups `incidents` by their CareFlex ID (`default_id` for rows without
/// one), each ID one the managing company handles.
pub fn plan(
    incidents: Vec<Incident>,
    default_id: &str,
    cfg: &CareflexConfig,
) -> Result<Vec<Report>, Vec<Problem>> {
    let mut reports: Vec<Report> = Vec::new();
    let mut problems = Vec::new();
    for i in incidents {
        let id = i
            .careflex_id
            .clone()
            .unwrap_or_else(|| default_id.to_string());
        if !cfg.handles(&id) {
            problems.push(Problem {
                line: i.line,
                message: format!(
                    "careflexId {id} is not one of the companies in [careflex] (careflex_id, companies: {}); add it there if the managing company reports for it",
                    cfg.all_ids().join(", ")
                ),
            });
            continue;
        }
        match reports.iter_mut().find(|r| r.careflex_id == id) {
            Some(r) => r.incidents.push(i),
            None => reports.push(Report {
                careflex_id: id,
                incidents: vec![i],
            }),
        }
    }
    if problems.is_empty() {
        Ok(reports)
    } else {
        Err(problems)
    }
}

/// Where a request is in the run.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// 1-based over the whole run.
    pub number: usize,
    pub total: usize,
    pub careflex_id: String,
    pub lines: RangeInclusive<usize>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub imported: Vec<Imported>,
    /// The request that failed and why; its incidents and every later one's
    /// were not imported (by the service's word or not sent at all).
    pub stopped: Option<(RequestInfo, CareflexError)>,
    /// Input lines not sent or not imported.
    pub unsent: Vec<usize>,
}

impl Outcome {
    pub fn rows(&self) -> usize {
        self.imported.iter().map(|i| i.rows.len()).sum()
    }
    pub fn failed(&self) -> usize {
        self.imported.iter().map(Imported::failed).sum()
    }
}

/// Sends `reports`; `input` names the file in the store; `on_request` hears
/// each answered request.
pub async fn send(
    client: &CareflexClient,
    store: &Store,
    reports: &[Report],
    input: &str,
    on_request: &mut dyn FnMut(&RequestInfo, &Imported),
) -> Result<Outcome, crate::store::StoreError> {
    imports::init(store)?;
    let total: usize = reports.iter().map(Report::requests).sum();
    let mut outcome = Outcome {
        imported: Vec::new(),
        stopped: None,
        unsent: Vec::new(),
    };
    let mut number = 0;
    for r in reports {
        for chunk in r.incidents.chunks(MAX_BATCH) {
            number += 1;
            if outcome.stopped.is_some() {
                outcome.unsent.extend(chunk.iter().map(|i| i.line));
                continue;
            }
            let info = RequestInfo {
                number,
                total,
                careflex_id: r.careflex_id.clone(),
                lines: chunk[0].line..=chunk[chunk.len() - 1].line,
            };
            let refs: Vec<&Incident> = chunk.iter().collect();
            match client.new_incidents(&r.careflex_id, &refs).await {
                Ok(imported) => {
                    imports::record_import(store, &imported, input, client.clock().now())?;
                    tracing::info!(
                        careflex_id = %r.careflex_id,
                        import_id = %imported.import_id,
                        incidents = imported.rows.len(),
                        refused = imported.failed(),
                        "CareFlex: request {number} of {total} imported"
                    );
                    on_request(&info, &imported);
                    outcome.imported.push(imported);
                }
                Err(e) => {
                    outcome.unsent.extend(chunk.iter().map(|i| i.line));
                    outcome.stopped = Some((info, e));
                }
            }
        }
    }
    Ok(outcome)
}

/// Today in Germany.
pub fn today(now: OffsetDateTime) -> Date {
    let tz = jiff::tz::TimeZone::get(TIME_ZONE).unwrap_or(jiff::tz::TimeZone::UTC);
    let z = jiff::Timestamp::from_second(now.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz);
    let d = z.date();
    Month::try_from(d.month() as u8)
        .ok()
        .and_then(|m| Date::from_calendar_date(i32::from(d.year()), m, d.day() as u8).ok())
        .unwrap_or_else(|| now.date())
}

/// `YYYY-MM` as its year and month.
pub fn parse_month(text: &str) -> Result<(i32, Month), String> {
    let bad = || format!("--month {text:?}: write the month as YYYY-MM, e.g. 2026-11");
    let (y, m) = text.trim().split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    Ok((year, Month::try_from(month).map_err(|_| bad())?))
}

/// `createdAt` of the empty report for `month`, as of `today`.
pub fn none_created_at(month: (i32, Month), today: Date) -> Result<Date, String> {
    let (year, m) = month;
    let first = Date::from_calendar_date(year, m, 1).map_err(|e| e.to_string())?;
    if first > today {
        return Err(format!(
            "{year:04}-{:02} has not begun; an empty report is sent for the running month or a past one",
            u8::from(m)
        ));
    }
    if today.year() == year && today.month() == m {
        return Ok(today);
    }
    Date::from_calendar_date(year, m, time::util::days_in_month(m, year)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_empty_reports_date_lies_in_its_month() {
        let today = date!(2026 - 12 - 02);
        assert_eq!(
            none_created_at(parse_month("2026-11").unwrap(), today),
            Ok(date!(2026 - 11 - 30))
        );
        assert_eq!(
            none_created_at(parse_month("2024-02").unwrap(), today),
            Ok(date!(2024 - 02 - 29))
        );
        assert_eq!(
            none_created_at(parse_month("2026-12").unwrap(), today),
            Ok(today)
        );
        assert!(none_created_at(parse_month("2027-01").unwrap(), today).is_err());
        assert!(parse_month("2026-13").is_err() && parse_month("26-11").is_err());
        // 23:30 UTC on 30 November is 1 December in Berlin
        assert_eq!(
            today_of(datetime!(2026-11-30 23:30 UTC)),
            date!(2026 - 12 - 01)
        );
    }

    fn today_of(t: OffsetDateTime) -> Date {
        today(t)
    }
}
