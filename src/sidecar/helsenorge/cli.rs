//! `kim-cm helsenorge …`: the command line of the Helsenorge sidecar. It reads
//! the same config file as `kim-cm serve` (its `[helsenorge]` section) and keeps
//! its offset in the same `state.sqlite`. Patients to re-check go to standard
//! output, one a line, so that they can be piped on; everything else goes to
//! standard error. Exit codes: 0 ok, 2 usage or config error, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::changes::{self, All, Patients};
use crate::config::{Config, LogFormat};
use crate::sidecar::clock;
use crate::store::Store;

/// `kim-cm helsenorge`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask DigitaltAktivStatusEndringer what changed since the last run and
    /// print the local patients (from --patients) whose status is to be checked
    /// again, one a line; then store the server's new offset.
    Changes(ChangesArgs),
}

#[derive(Args, Debug)]
pub struct ChangesArgs {
    /// kim-cm's config file, with a [helsenorge] section.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The local patients: one national identity number a line.
    #[arg(long)]
    pub patients: PathBuf,
    /// Accept synthetic test numbers (Tenor, SyntPop) in the patients file:
    /// test environments only.
    #[arg(long)]
    pub synthetic: bool,
    /// Forget the stored offset: ask for every change Helsenorge still keeps and
    /// print all local patients to be re-checked.
    #[arg(long)]
    pub reset_offset: bool,
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
        Command::Changes(args) => rt.block_on(run_changes(args, init_logging)),
    }
}

async fn run_changes(args: ChangesArgs, init_logging: fn(LogFormat, &str)) -> ExitCode {
    let file = args.config.display().to_string();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let Some(mut hn) = cfg.helsenorge.clone() else {
        return fail(
            2,
            format!("config file {file} has no [helsenorge] section (see docs/helsenorge.md)"),
        );
    };
    let base = args.config.parent().unwrap_or(std::path::Path::new("."));
    if let Err(e) = hn.resolve(base) {
        return fail(2, format!("config file {file}: {e}"));
    }
    init_logging(cfg.log.format, &cfg.log.level);
    let rules = hn.rules(args.synthetic);
    let patients = match Patients::read(&args.patients, rules) {
        Ok(p) => p,
        Err(e) => return fail(2, e),
    };
    for (line, why) in &patients.invalid {
        eprintln!(
            "kim-cm: patients file {} line {line}: skipped, {why}",
            args.patients.display()
        );
    }
    let clock = clock::system();
    let client = match super::changes_client(&hn, clock.clone()) {
        Ok(c) => c,
        Err(e) => return fail(2, format!("config file {file}: {e}")),
    };
    if let Err(e) = std::fs::create_dir_all(&cfg.proxy.data_dir) {
        return fail(
            1,
            format!(
                "cannot create the data folder {}: {e}",
                cfg.proxy.data_dir.display()
            ),
        );
    }
    let store = match Store::open(&cfg.proxy.data_dir.join(crate::serve::STATE_FILE)) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = match changes::run(
        &client,
        &store,
        &patients,
        rules,
        &clock,
        args.reset_offset,
        &mut out,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return fail(1, e),
    };
    let n = patients.numbers.len();
    match &outcome.all {
        Some(All::Lapsed { stored }) => eprintln!(
            "kim-cm: warning: the stored offset {stored} is older than the {} months Helsenorge keeps changes for; changes since then may be lost, so every local patient must be checked again: all {n} are printed",
            super::offset::WINDOW_MONTHS
        ),
        Some(All::Reset) => eprintln!(
            "kim-cm: the offset was reset: all {n} local patients are printed to be checked again"
        ),
        None if outcome.first_run => tracing::info!(
            "first run: no stored offset, so Helsenorge sent the changes of up to {} months",
            super::offset::WINDOW_MONTHS
        ),
        None => {}
    }
    tracing::info!(
        changed = outcome.changed,
        local = n,
        recheck = outcome.recheck.len(),
        offset = %outcome.offset,
        "Helsenorge changes read; offset stored"
    );
    ExitCode::SUCCESS
}
