//! `kim-cm careflex report | none | imports`: the command line of the CareFlex
//! sidecar. It reads the same config file as `kim-cm serve` (its `[careflex]`
//! section) and keeps the importIds in the same `state.sqlite`. What was sent
//! and what CareFlex answered goes to standard output, one line per incident;
//! warnings and errors go to standard error. Exit codes: 0 everything
//! imported, 1 CareFlex refused a row or a request, or failed, 2 usage,
//! config or input error (nothing sent).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::client::CareflexClient;
use super::config::CareflexConfig;
use super::input::{self, Rules};
use super::report::{self, Report};
use super::{imports, soap};
use crate::config::Config;
use crate::sidecar::clock;
use crate::store::Store;

/// `kim-cm careflex`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send the incidents of INPUT (CSV or JSON, with or without master data)
    /// to CareFlex: grouped by CareFlex ID, at most 100 per request. Prints
    /// each request's importId and each incident's id or error.
    Report(ReportArgs),
    /// Send the empty report ("no HR incidents") of a month.
    #[command(name = "none")]
    NoIncident(NoneArgs),
    /// List the importIds and empty reports sent, for the feedback check.
    Imports(ImportsArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// kim-cm's config file, with a [careflex] section.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The CareFlex ID of rows without a careflexId column (default: [careflex]
    /// careflex_id).
    #[arg(long)]
    pub careflex_id: Option<String>,
    /// Check the input and show the requests it takes; send nothing.
    #[arg(long)]
    pub check: bool,
    /// The incidents: CSV with a header line of CareFlex element names, or a
    /// JSON array (docs/careflex.md). Several files: all are checked first.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct NoneArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// The company's CareFlex ID (default: [careflex] careflex_id).
    #[arg(long)]
    pub careflex_id: Option<String>,
    /// The month without incidents, YYYY-MM.
    #[arg(long)]
    pub month: String,
}

#[derive(Args, Debug)]
pub struct ImportsArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Only this CareFlex ID.
    #[arg(long)]
    pub careflex_id: Option<String>,
    /// Each incident of each import as well.
    #[arg(long)]
    pub rows: bool,
}

fn fail(code: u8, sentence: impl std::fmt::Display) -> ExitCode {
    eprintln!("kim-cm: {sentence}");
    ExitCode::from(code)
}

/// The config, its `[careflex]` and the store.
fn load(path: &Path) -> Result<(Config, CareflexConfig, Store), ExitCode> {
    let file = path.display();
    let cfg = Config::load(path).map_err(|e| fail(2, e))?;
    let cf = cfg.careflex.clone().ok_or_else(|| {
        fail(
            2,
            format!("config file {file} has no [careflex] section; add one (docs/careflex.md)"),
        )
    })?;
    cf.check()
        .map_err(|e| fail(2, format!("config file {file}: {e}")))?;
    std::fs::create_dir_all(&cfg.proxy.data_dir).map_err(|e| {
        fail(
            1,
            format!(
                "cannot create the data folder {}: {e}",
                cfg.proxy.data_dir.display()
            ),
        )
    })?;
    let store =
        Store::open(&cfg.proxy.data_dir.join(crate::serve::STATE_FILE)).map_err(|e| fail(1, e))?;
    Ok((cfg, cf, store))
}

/// Runs `cmd`.
pub fn run(rt: &tokio::runtime::Runtime, cmd: Command) -> ExitCode {
    let r = match cmd {
        Command::Report(a) => rt.block_on(run_report(a)),
        Command::NoIncident(a) => rt.block_on(run_none(a)),
        Command::Imports(a) => run_imports(a),
    };
    r.unwrap_or_else(|code| code)
}

fn chosen_id(cf: &CareflexConfig, given: Option<String>) -> Result<String, ExitCode> {
    let id = given.unwrap_or_else(|| cf.careflex_id.clone());
    if !super::config::careflex_id_ok(&id) {
        return Err(fail(
            2,
            format!("--careflex-id '{id}' is not a CareFlex ID (letters and digits, e.g. 09ce3580d84bf090)"),
        ));
    }
    if !cf.handles(&id) {
        return Err(fail(
            2,
            format!(
                "CareFlex ID {id} is not one of the companies in [careflex] (careflex_id, companies: {}); add it there if the managing company reports for it",
                cf.all_ids().join(", ")
            ),
        ));
    }
    Ok(id)
}

async fn run_report(args: ReportArgs) -> Result<ExitCode, ExitCode> {
    let (cfg, cf, store) = load(&args.config)?;
    crate::sidecar::init_logging(&cfg);
    let default_id = chosen_id(&cf, args.careflex_id.clone())?;
    let clock = clock::system();
    let today = report::today(clock.now());
    let rules = Rules {
        sex_values: &cf.sex_values,
        today,
    };
    // every file checked before anything is sent
    let mut planned: Vec<(String, Vec<Report>)> = Vec::new();
    let mut bad = false;
    for path in &args.inputs {
        let name = path.display().to_string();
        let checked = input::read(path, &rules).and_then(|incidents| {
            report::plan(incidents, &default_id, &cf).map_err(|problems| {
                input::InputError::Invalid {
                    file: name.clone(),
                    problems,
                }
            })
        });
        match checked {
            Ok(reports) => planned.push((name, reports)),
            Err(e) => {
                eprintln!("kim-cm: {e}");
                bad = true;
            }
        }
    }
    if bad {
        return Err(fail(
            2,
            "the input has problems (above); nothing was sent. Correct them and run again",
        ));
    }
    if args.check {
        for (name, reports) in &planned {
            for r in reports {
                println!(
                    "{name}: {} incidents for careflexId {} in {} request{}",
                    r.incidents.len(),
                    r.careflex_id,
                    r.requests(),
                    if r.requests() == 1 { "" } else { "s" }
                );
            }
        }
        println!("the input is valid; nothing was sent (--check)");
        return Ok(ExitCode::SUCCESS);
    }
    let client = CareflexClient::new(&cf, clock.clone()).map_err(|e| fail(2, e))?;
    let (mut rows, mut failed, mut requests) = (0, 0, 0);
    let several = planned.len() > 1;
    for (name, reports) in &planned {
        if several {
            println!("{name}:");
        }
        let mut print = |info: &report::RequestInfo, imp: &super::client::Imported| {
            println!(
                "request {} of {} for careflexId {} (lines {}-{}): importId {}",
                info.number,
                info.total,
                info.careflex_id,
                info.lines.start(),
                info.lines.end(),
                imp.import_id
            );
            for r in &imp.rows {
                let ext = r
                    .external_id
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                match &r.result {
                    Ok(id) => println!(
                        "line {} employee {}{ext}: incident {id}",
                        r.line, r.employee_id
                    ),
                    Err((code, msg)) => println!(
                        "line {} employee {}{ext}: error {code}: {msg}",
                        r.line, r.employee_id
                    ),
                }
            }
        };
        let outcome = report::send(&client, &store, reports, name, &mut print)
            .await
            .map_err(|e| fail(1, e))?;
        rows += outcome.rows();
        failed += outcome.failed();
        requests += outcome.imported.len();
        if let Some((info, e)) = &outcome.stopped {
            let done = if outcome.imported.is_empty() {
                "no request of it was imported".to_string()
            } else {
                format!(
                    "requests 1 to {} were imported (importIds above) and must not be sent again",
                    info.number - 1
                )
            };
            return Err(fail(
                1,
                format!(
                    "{e}. {name}: {done}; lines {} were not imported: send them again once the cause is fixed",
                    ranges(&outcome.unsent)
                ),
            ));
        }
    }
    println!(
        "{rows} incidents in {requests} request{}: {} imported, {failed} refused",
        if requests == 1 { "" } else { "s" },
        rows - failed
    );
    if failed > 0 {
        return Err(fail(
            1,
            format!("{failed} of {rows} incidents were refused by CareFlex (the lines with an error above); correct those rows and send only them again"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `2-5, 9` for [2, 3, 4, 5, 9].
fn ranges(lines: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

async fn run_none(args: NoneArgs) -> Result<ExitCode, ExitCode> {
    let (cfg, cf, store) = load(&args.config)?;
    crate::sidecar::init_logging(&cfg);
    let id = chosen_id(&cf, args.careflex_id.clone())?;
    let month = report::parse_month(&args.month).map_err(|e| fail(2, e))?;
    let clock = clock::system();
    let created_at =
        report::none_created_at(month, report::today(clock.now())).map_err(|e| fail(2, e))?;
    let month_text = format!("{:04}-{:02}", month.0, u8::from(month.1));
    imports::init(&store).map_err(|e| fail(1, e))?;
    if let Some(earlier) = imports::nones(&store, Some(&id))
        .map_err(|e| fail(1, e))?
        .iter()
        .find(|n| n.month == month_text)
    {
        eprintln!(
            "kim-cm: note: the empty report of {month_text} for {id} was sent before, on {}; sending it again",
            crate::sidecar::day_text(earlier.sent_at)
        );
    }
    let client = CareflexClient::new(&cf, clock.clone()).map_err(|e| fail(2, e))?;
    client
        .no_incident(&id, created_at)
        .await
        .map_err(|e| fail(1, e))?;
    let created = soap::date_text(created_at);
    imports::record_none(&store, &id, &month_text, &created, clock.now())
        .map_err(|e| fail(1, e))?;
    tracing::info!(careflex_id = %id, month = %month_text, "CareFlex: empty report sent");
    println!("empty report of {month_text} for careflexId {id} sent (createdAt {created})");
    Ok(ExitCode::SUCCESS)
}

fn run_imports(args: ImportsArgs) -> Result<ExitCode, ExitCode> {
    let (_, _, store) = load(&args.config)?;
    imports::init(&store).map_err(|e| fail(1, e))?;
    let id = args.careflex_id.as_deref();
    let list = imports::imports(&store, id).map_err(|e| fail(1, e))?;
    let nones = imports::nones(&store, id).map_err(|e| fail(1, e))?;
    let when = |t: time::OffsetDateTime| {
        format!(
            "{} {:02}:{:02}:{:02} UTC",
            crate::sidecar::day_text(t),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    for i in &list {
        println!(
            "{}  careflexId {}  importId {}  {} incidents, {} refused  ({})",
            when(i.sent_at),
            i.careflex_id,
            i.import_id,
            i.incidents,
            i.failed,
            i.input
        );
        if args.rows {
            for r in &i.rows {
                match (&r.incident_id, &r.code) {
                    (Some(inc), _) => println!(
                        "  line {} employee {}: incident {inc}",
                        r.line, r.employee_id
                    ),
                    (None, code) => println!(
                        "  line {} employee {}: error {}: {}",
                        r.line,
                        r.employee_id,
                        code.as_deref().unwrap_or("-"),
                        r.message.as_deref().unwrap_or("")
                    ),
                }
            }
        }
    }
    for n in &nones {
        println!(
            "{}  careflexId {}  empty report of {} (createdAt {})",
            when(n.sent_at),
            n.careflex_id,
            n.month,
            n.created_at
        );
    }
    if list.is_empty() && nones.is_empty() {
        eprintln!("kim-cm: nothing was sent to CareFlex yet");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ranges_are_short() {
        assert_eq!(super::ranges(&[2, 3, 4, 5, 9, 11, 12]), "2-5, 9, 11-12");
        assert_eq!(super::ranges(&[]), "");
    }
}
