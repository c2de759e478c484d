//! `zsr sync`: the FAQ's two steps. First the number list: always the whole
//! list (only it shows which numbers the service no longer delivers), and for a
//! delta sync also the list of numbers modified since the last finished sync
//! (`modifiedFrom`, the day it started, so nothing between two syncs is
//! missed). Then the details of the numbers to fetch, 500 per request, one
//! request after the other, each batch stored whole. Last, numbers missing from
//! the whole list are ended and the sync is recorded as finished. No threshold
//! on the number of mutations stops it.
//!
//! A full sync (the first, or `--full`) fetches every number's details; a delta
//! sync those modified since, those not in the mirror yet and those coming
//! back after being ended.

use std::collections::HashSet;
use std::time::Duration;

use time::{Date, OffsetDateTime};

use super::api::{ZsrApi, ZsrError, DETAIL_BATCH};
use super::config::OutsideWindow;
use super::mirror::{self, Applied, CURSOR_LAST_SYNC, CURSOR_SERVICE};
use super::number::{self, Kind, RemainderZero};
use crate::sidecar::cursor;
use crate::sidecar::progress::Progress;
use crate::store::Store;

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Fetch every number's details even when a previous sync finished.
    pub full: bool,
    /// What a full sync started outside the batch window does.
    pub outside: OutsideWindow,
    /// A progress bar on a terminal.
    pub progress: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub full: bool,
    /// How it ran in respect of the batch window, in a sentence.
    pub pace: String,
    pub listed: u64,
    pub fetched: u64,
    pub applied: Applied,
    pub ended: u64,
    /// Numbers in the list that are not ZSR or K numbers (left out, logged).
    pub skipped: u64,
    pub requests: u64,
    pub list_pages: u64,
    pub detail_requests: u64,
    pub busy_pauses: u64,
}

/// Whole minutes, for sentences.
fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60)
}

/// Says how the run keeps to the batch window, and waits for it if told to.
async fn pace(
    api: &ZsrApi,
    full: bool,
    estimate: Option<u64>,
    outside: OutsideWindow,
    say: &(dyn Fn(&str) + Sync),
) -> String {
    let w = api.window();
    let now = api.clock().now();
    let text = if api.unlimited() {
        "without a rate limit (unlimited_rate_for_testing)".to_string()
    } else if w.contains(now) {
        format!("in the batch window {}", w.text)
    } else if full && outside == OutsideWindow::Wait {
        let opens = w.next_opening(now);
        let wait = Duration::try_from(opens - now).unwrap_or_default();
        say(&format!(
            "outside the batch window {}: waiting {} minutes until it opens",
            w.text,
            minutes(wait)
        ));
        api.clock().sleep(wait).await;
        format!(
            "in the batch window {} (waited {} minutes for it)",
            w.text,
            minutes(wait)
        )
    } else {
        let rate = api.slow_rate();
        let how_long = match estimate {
            Some(n) => format!(
                " (about {} minutes for some {n} requests)",
                n.div_ceil(u64::from(rate)).max(1)
            ),
            None => String::new(),
        };
        format!(
            "outside the batch window {}: at most {rate} requests a minute{how_long}",
            w.text
        )
    };
    say(&format!(
        "ZSR sync ({}) {text}",
        if full { "full" } else { "delta" }
    ));
    text
}

/// Runs one sync into `store`; `say` hears what the user should know before
/// the end (the pace, a wait).
pub async fn sync(
    api: &ZsrApi,
    store: &Store,
    opts: SyncOptions,
    policy: RemainderZero,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Summary, ZsrError> {
    let store_err = |e: crate::store::StoreError| ZsrError::Config(e.to_string());
    mirror::init(store).map_err(store_err)?;
    let previous = cursor::get(store, CURSOR_SERVICE, CURSOR_LAST_SYNC).map_err(store_err)?;
    let since: Option<Date> = previous.as_ref().and_then(|c| {
        Date::parse(
            &c.value,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()
    });
    let full = opts.full || since.is_none();
    // the client's counters run across syncs
    let (requests_before, counts_before) = (api.requests(), api.counts());
    let local = mirror::numbers(store).map_err(store_err)?;
    // a rough count for the pace sentence, from the mirror's size (none the
    // first time): the list pages and, for a full sync, the details
    let n = local.len() as u64;
    let estimate = (n > 0).then(|| {
        let pages = n.div_ceil(u64::from(api.page_size()));
        pages
            + if full {
                n.div_ceil(DETAIL_BATCH as u64)
            } else {
                pages + 1
            }
    });
    let mut s = Summary {
        full,
        pace: pace(api, full, estimate, opts.outside, say).await,
        ..Summary::default()
    };
    // the cut-off for the next sync: today, as the service counts days
    let started: OffsetDateTime = api.clock().now();
    let cut_off = super::api::date_text(started.date());

    let listed = api.list(None, &|_| {}).await?;
    s.listed = listed.len() as u64;
    let mut fetch: Vec<String> = if full {
        listed.clone()
    } else {
        let changed = api.list(since, &|_| {}).await?;
        let listed_set: HashSet<&String> = listed.iter().collect();
        let mut f: Vec<String> = changed
            .into_iter()
            .filter(|n| listed_set.contains(n))
            .collect();
        f.extend(
            listed
                .iter()
                .filter(|n| local.get(*n) != Some(&true))
                .cloned(),
        );
        f
    };
    fetch.sort();
    fetch.dedup();

    let (mut zsr, mut k) = (Vec::new(), Vec::new());
    for n in &fetch {
        match number::parse(n, policy) {
            Ok(p) if p.text == *n => match p.kind {
                Kind::Zsr => zsr.push(n.clone()),
                Kind::K => k.push(n.clone()),
            },
            _ => {
                s.skipped += 1;
                tracing::warn!(
                    "ZSR: the service listed {n:?}, which is not a valid ZSR or K number; left out"
                );
            }
        }
    }
    s.fetched = (zsr.len() + k.len()) as u64;
    let progress = Progress::new("ZSR details", s.fetched, opts.progress);
    for (kind, numbers) in [(Kind::Zsr, &zsr), (Kind::K, &k)] {
        for batch in numbers.chunks(DETAIL_BATCH) {
            let records = api.details(kind, batch).await?;
            s.applied +=
                mirror::apply(store, kind, &records, api.clock().now()).map_err(store_err)?;
            progress.advance(batch.len() as u64);
        }
    }
    progress.finish();
    let listed_set: HashSet<String> = listed.into_iter().collect();
    s.ended = mirror::finish(store, &listed_set, &cut_off, api.clock().now()).map_err(store_err)?;
    let c = api.counts();
    s.requests = api.requests() - requests_before;
    s.list_pages = c.list_pages - counts_before.list_pages;
    s.detail_requests = c.detail_requests - counts_before.detail_requests;
    s.busy_pauses = c.busy_pauses - counts_before.busy_pauses;
    tracing::info!(
        new = s.applied.new,
        changed = s.applied.changed,
        ended = s.ended,
        deleted = s.applied.deleted,
        requests = s.requests,
        "ZSR sync finished"
    );
    Ok(s)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ZSR sync ({}) finished {}",
            if self.full { "full" } else { "delta" },
            self.pace
        )?;
        writeln!(f, "numbers listed     {}", self.listed)?;
        writeln!(f, "details fetched    {}", self.fetched)?;
        writeln!(f, "new                {}", self.applied.new)?;
        writeln!(f, "changed            {}", self.applied.changed)?;
        writeln!(f, "unchanged          {}", self.applied.unchanged)?;
        writeln!(f, "ended              {}", self.ended)?;
        writeln!(f, "deleted elements   {}", self.applied.deleted)?;
        if self.skipped > 0 {
            writeln!(f, "left out (invalid) {}", self.skipped)?;
        }
        writeln!(
            f,
            "requests           {} ({} list pages, {} detail requests{})",
            self.requests,
            self.list_pages,
            self.detail_requests,
            if self.busy_pauses > 0 {
                format!(", {} pauses after 503", self.busy_pauses)
            } else {
                String::new()
            }
        )
    }
}
