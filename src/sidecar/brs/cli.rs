//! `kim-cm brs relation | notifications`: the command line of the NSP
//! sidecar. It reads the same config file as `kim-cm serve` (its `[brs]`
//! section) and keeps its notifications and cursor in the same
//! `state.sqlite`. Answers go to standard output; everything else to
//! standard error. Exit codes: 0 ok, 2 usage, configuration or an invalid
//! identifier (nothing was sent), 1 the STS or NSP refused or failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::client::{Notification, RelationAnswer, RelationRequest};
use super::config::{self, BrsConfig};
use super::{ids, notifications};
use crate::config::{Config, LogFormat};
use crate::sidecar::clock;
use crate::store::Store;

/// `kim-cm brs`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask BRS for the treatment relation between a patient and a health
    /// professional (treatmentRelation), ordering a follow-up as configured.
    Relation(Box<RelationArgs>),
    /// Fetch the new notifications (follow-ups whose criteria were not met),
    /// store them and print them.
    Notifications(NotificationArgs),
}

#[derive(Args, Debug)]
pub struct RelationArgs {
    /// kim-cm's config file, with a [brs] section.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The patient's CPR number.
    #[arg(long)]
    pub patient: String,
    /// The health professional's CPR number.
    #[arg(long)]
    pub professional: String,
    /// The organisation: ydernummer:N, sks:CODE, sor:CODE or ean:N (plain
    /// digits: 5-6 ydernummer, 13 EAN, 15-18 SOR).
    #[arg(long)]
    pub org: String,
    /// The professional's authorisation id (e.g. DM712).
    #[arg(long)]
    pub authorisation: String,
    /// The follow-up's time limit: a time (2026-12-31T12:00:00+01:00) or
    /// days/hours from now (30d, 12h); [brs] time_limit_days by default.
    #[arg(long)]
    pub time_limit: Option<String>,
    /// Start of the lookup interval (a time); the ID card's validity by default.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// End of the lookup interval (a time).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Your reference, returned with a notification; a new UUID by default.
    #[arg(long)]
    pub external_reference_id: Option<String>,
    /// The CVR that may read the notification; [brs] cvr by default.
    #[arg(long)]
    pub queryable_cvr: Option<String>,
    /// Acceptable relations, comma-separated (A+,A,B); [brs] acceptable_relations by default.
    #[arg(long, value_delimiter = ',')]
    pub acceptable: Vec<String>,
    /// Relations that order a follow-up, comma-separated, or ALL; [brs] followup_relations by default.
    #[arg(long, value_delimiter = ',')]
    pub followup: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NotificationArgs {
    /// kim-cm's config file, with a [brs] section.
    #[arg(long, short)]
    pub config: PathBuf,
}

fn fail(code: u8, sentence: impl std::fmt::Display) -> ExitCode {
    eprintln!("kim-cm: {sentence}");
    ExitCode::from(code)
}

/// Runs `cmd`; `init_logging` sets logging up as the config says.
pub fn run(
    rt: &tokio::runtime::Runtime,
    cmd: Command,
    init_logging: fn(LogFormat, &str),
) -> ExitCode {
    match cmd {
        Command::Relation(a) => rt.block_on(run_relation(*a, init_logging)),
        Command::Notifications(a) => rt.block_on(run_notifications(a, init_logging)),
    }
}

/// The config and its `[brs]`, checked.
fn load(path: &std::path::Path) -> Result<(Config, BrsConfig), ExitCode> {
    let cfg = Config::load(path).map_err(|e| fail(2, e))?;
    let Some(mut brs) = cfg.brs.clone() else {
        return Err(fail(
            2,
            format!(
                "config file {} has no [brs] section (see docs/brs.md)",
                path.display()
            ),
        ));
    };
    brs.make_absolute(path.parent().unwrap_or(std::path::Path::new(".")));
    brs.check()
        .map_err(|e| fail(2, format!("config file {}: {e}", path.display())))?;
    Ok((cfg, brs))
}

/// A time given on the command line: RFC 3339, or `30d` / `12h` from `now`.
pub fn parse_when(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let t = text.trim();
    let relative = |n: &str, unit: u64| {
        n.parse::<u64>()
            .ok()
            .filter(|n| *n > 0 && *n <= 3650)
            .map(|n| now + Duration::from_secs(n * unit))
    };
    let got = if let Some(d) = t.strip_suffix('d') {
        relative(d, 86_400)
    } else if let Some(h) = t.strip_suffix('h') {
        relative(h, 3_600)
    } else {
        super::parse_time(t)
    };
    got.ok_or_else(|| {
        format!("{text:?} is no time: give e.g. 2026-12-31T12:00:00+01:00, 30d or 12h")
    })
}

/// The request from the arguments and the config; a sentence for what is wrong.
pub fn relation_request(
    a: &RelationArgs,
    brs: &BrsConfig,
    own_cvr: &str,
    now: OffsetDateTime,
) -> Result<RelationRequest, String> {
    let patient = ids::cpr(&a.patient).map_err(|e| format!("--patient: {e}"))?;
    let professional = ids::cpr(&a.professional).map_err(|e| format!("--professional: {e}"))?;
    let organisation = ids::org(&a.org).map_err(|e| format!("--org: {e}"))?;
    let authorisation_id =
        ids::authorisation(&a.authorisation).map_err(|e| format!("--authorisation: {e}"))?;
    let queryable_cvr = match &a.queryable_cvr {
        Some(c) => ids::cvr(c).map_err(|e| format!("--queryable-cvr: {e}"))?,
        None => own_cvr.to_string(),
    };
    let time_limit = match &a.time_limit {
        Some(t) => parse_when(t, now).map_err(|e| format!("--time-limit: {e}"))?,
        None => now + Duration::from_secs(u64::from(brs.time_limit_days) * 86_400),
    };
    if time_limit <= now {
        return Err("--time-limit is in the past: a follow-up needs a time limit to come".into());
    }
    let lookup = match (&a.from, &a.to) {
        (Some(f), Some(t)) => {
            let f = parse_when(f, now).map_err(|e| format!("--from: {e}"))?;
            let t = parse_when(t, now).map_err(|e| format!("--to: {e}"))?;
            if t < f {
                return Err("--to is before --from".into());
            }
            Some((f, t))
        }
        _ => None,
    };
    let acceptable = if a.acceptable.is_empty() {
        brs.acceptable_relations.clone()
    } else {
        a.acceptable.clone()
    };
    let acceptable = acceptable
        .iter()
        .map(|r| ids::relation(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--acceptable: {e}"))?;
    let followup = if a.followup.is_empty() {
        &brs.followup_relations
    } else {
        &a.followup
    };
    let followup = config::followup(followup).map_err(|e| format!("--followup: {e}"))?;
    let external_reference_id = match &a.external_reference_id {
        Some(e) if e.trim().is_empty() || e.len() > 100 => {
            return Err("--external-reference-id must be 1 to 100 characters".into())
        }
        Some(e) => e.trim().to_string(),
        None => super::new_uuid(),
    };
    Ok(RelationRequest {
        organisation,
        patient_cpr: patient,
        professional_cpr: professional,
        lookup,
        time_limit,
        external_reference_id,
        queryable_cvr,
        acceptable,
        followup,
        authorisation_id,
        provider_name: brs.service_provider_name.clone(),
        provider_version: brs.service_provider_version.clone(),
        provider_vendor: brs.service_provider_vendor.clone(),
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The answer as printed.
pub fn show_answer(a: &RelationAnswer) -> String {
    format!(
        "sufficient relation:   {}\nactual relations:      {}\nfollow-up ordered:     {}\nunique reference id:   {}\nexternal reference id: {}\n",
        yes(a.sufficient),
        if a.actual.is_empty() {
            "none".to_string()
        } else {
            a.actual.join(", ")
        },
        yes(a.followup_ordered),
        a.unique_reference_id,
        a.external_reference_id
    )
}

/// One notification as printed (one line).
pub fn show_notification(n: &Notification) -> String {
    format!(
        "notification {}: {} follow-up not met by {}; patient {}, professional {}, {}; actual relations {}; external reference id {}, unique id {}",
        n.serial,
        n.kind,
        if n.time_limit.is_empty() { "-" } else { &n.time_limit },
        n.patient_cpr,
        n.professional_cpr,
        if n.organisation.is_empty() { "organisation -" } else { &n.organisation },
        if n.actual_relations.is_empty() {
            "none".to_string()
        } else {
            n.actual_relations.join(", ")
        },
        n.external_reference_id,
        n.unique_id
    )
}

/// `state.sqlite` in the data folder.
fn open_store(cfg: &Config) -> Result<Arc<Store>, ExitCode> {
    std::fs::create_dir_all(&cfg.proxy.data_dir).map_err(|e| {
        fail(
            1,
            format!(
                "cannot create the data folder {}: {e}",
                cfg.proxy.data_dir.display()
            ),
        )
    })?;
    Store::open(&cfg.proxy.data_dir.join(crate::serve::STATE_FILE))
        .map(Arc::new)
        .map_err(|e| fail(1, e))
}

/// The client, its card kept in `store`.
fn client_for(
    brs: &BrsConfig,
    config: &std::path::Path,
    store: &Arc<Store>,
) -> Result<super::client::NspClient, ExitCode> {
    let mut client = super::nsp_client(brs, clock::system())
        .map_err(|e| fail(2, format!("config file {}: {e}", config.display())))?;
    client.cards = client
        .cards
        .with_store(store.clone())
        .map_err(|e| fail(1, e))?;
    Ok(client)
}

async fn run_relation(a: RelationArgs, init_logging: fn(LogFormat, &str)) -> ExitCode {
    let (cfg, brs) = match load(&a.config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    init_logging(cfg.log.format, &cfg.log.level);
    let store = match open_store(&cfg) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let client = match client_for(&brs, &a.config, &store) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let now = client.http.clock.now();
    let req = match relation_request(&a, &brs, client.cards.cvr(), now) {
        Ok(r) => r,
        Err(e) => return fail(2, format!("{e}; nothing was sent")),
    };
    match client.relation(&req).await {
        Ok(answer) => {
            print!("{}", show_answer(&answer));
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

async fn run_notifications(a: NotificationArgs, init_logging: fn(LogFormat, &str)) -> ExitCode {
    let (cfg, brs) = match load(&a.config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    init_logging(cfg.log.format, &cfg.log.level);
    let store = match open_store(&cfg) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let client = match client_for(&brs, &a.config, &store) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let mut print = |n: &Notification| println!("{}", show_notification(n));
    match notifications::poll(&client, &store, &mut print).await {
        Ok(p) => {
            eprintln!(
                "kim-cm: {} new notification{} in {} page{}; next serial number {}{}",
                p.new.len(),
                if p.new.len() == 1 { "" } else { "s" },
                p.pages,
                if p.pages == 1 { "" } else { "s" },
                p.next_serial,
                if p.more {
                    "; there are more: run again"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}
