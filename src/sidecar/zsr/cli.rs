//! `kim-cm zsr sync | show | validate`: the arguments, the config, the store,
//! and what is printed. Exit codes: 0 done, 1 the service refused or failed (a
//! sentence on stderr), 2 usage, configuration or an invalid number.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::Value;

use super::api::ZsrApi;
use super::config::{OutsideWindow, ZsrConfig};
use super::mirror;
use super::number::{self, Kind, RemainderZero};
use super::sync::{sync, SyncOptions};
use crate::config::Config;
use crate::sidecar::clock;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum ZsrCmd {
    /// Load the register into the local mirror: a delta since the last finished
    /// sync, or everything the first time or with --full.
    Sync {
        #[arg(long, short)]
        config: PathBuf,
        /// Fetch every number's details.
        #[arg(long)]
        full: bool,
        /// Outside the batch window, wait for it (a full sync).
        #[arg(long, conflicts_with = "slow")]
        wait_for_window: bool,
        /// Outside the batch window, run at the slow rate.
        #[arg(long)]
        slow: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Show NUMBER from the local mirror, with its validity periods.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        /// The whole record as the service delivered it, as JSON.
        #[arg(long)]
        json: bool,
        number: String,
    },
    /// Check ZSR and K numbers (format and check letter) without asking anyone.
    Validate {
        /// Take [zsr] remainder_zero from this config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Refuse ZSR numbers whose digit sum is divisible by 26.
        #[arg(long)]
        refuse_remainder_zero: bool,
        #[arg(required = true)]
        numbers: Vec<String>,
    },
}

/// How a command ended badly.
pub struct Failed {
    pub code: u8,
    pub sentence: String,
}

fn usage(sentence: impl Into<String>) -> Failed {
    Failed {
        code: 2,
        sentence: sentence.into(),
    }
}

fn failed(e: impl std::fmt::Display) -> Failed {
    Failed {
        code: 1,
        sentence: e.to_string(),
    }
}

/// The config's `[zsr]` and the store.
fn load(path: &Path) -> Result<(Config, ZsrConfig, Store), Failed> {
    let cfg = Config::load(path).map_err(|e| usage(e.to_string()))?;
    let zsr = cfg.zsr.clone().ok_or_else(|| {
        usage(format!(
            "config file {}: there is no [zsr] section; add one (docs/zsr.md)",
            path.display()
        ))
    })?;
    zsr.check()
        .map_err(|e| usage(format!("config file {}: {e}", path.display())))?;
    std::fs::create_dir_all(&cfg.proxy.data_dir).map_err(|e| {
        usage(format!(
            "cannot create the data folder {}: {e}",
            cfg.proxy.data_dir.display()
        ))
    })?;
    let store = Store::open(&cfg.proxy.data_dir.join(crate::serve::STATE_FILE)).map_err(failed)?;
    Ok((cfg, zsr, store))
}

/// Runs one `kim-cm zsr` command; what to print goes to stdout.
pub async fn run(cmd: ZsrCmd) -> Result<(), Failed> {
    match cmd {
        ZsrCmd::Validate {
            config,
            refuse_remainder_zero,
            numbers,
        } => {
            let mut policy = match &config {
                Some(p) => load(p)?.1.remainder_zero,
                None => RemainderZero::Z,
            };
            if refuse_remainder_zero {
                policy = RemainderZero::Refuse;
            }
            let mut bad = Vec::new();
            for n in &numbers {
                match number::parse(n, policy) {
                    Ok(p) => println!("{}", describe(&p)),
                    Err(e) => {
                        println!("{n}: invalid: {e}");
                        bad.push(n.clone());
                    }
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(usage(format!(
                    "{} of {} numbers are invalid",
                    bad.len(),
                    numbers.len()
                )))
            }
        }
        ZsrCmd::Show {
            config,
            json,
            number,
        } => {
            let (_, zsr, store) = load(&config)?;
            let n = number::parse(&number, zsr.remainder_zero).map_err(|e| usage(e.to_string()))?;
            mirror::init(&store).map_err(failed)?;
            let stored = mirror::get(&store, &n.text).map_err(failed)?.ok_or_else(|| {
                failed(format!(
                    "{} is not in the local mirror: run `kim-cm zsr sync`, or check that your SASIS subscription covers it",
                    n.text
                ))
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stored.record).unwrap_or_default()
                );
            } else {
                print!("{}", show(&stored));
            }
            Ok(())
        }
        ZsrCmd::Sync {
            config,
            full,
            wait_for_window,
            slow,
            no_progress,
        } => {
            let (cfg, zsr, store) = load(&config)?;
            crate::sidecar::init_logging(&cfg);
            let api = ZsrApi::new(&zsr, clock::system()).map_err(|e| usage(e.to_string()))?;
            let outside = if wait_for_window {
                OutsideWindow::Wait
            } else if slow {
                OutsideWindow::Slow
            } else {
                zsr.outside_window
            };
            let opts = SyncOptions {
                full,
                outside,
                progress: !no_progress,
            };
            let say = |s: &str| eprintln!("{s}");
            let summary = sync(&api, &store, opts, zsr.remainder_zero, &say)
                .await
                .map_err(failed)?;
            print!("{summary}");
            Ok(())
        }
    }
}

fn describe(p: &number::Number) -> String {
    match (p.kind, p.remainder_zero) {
        (Kind::K, _) => format!("{}: valid K number (no check digit)", p.text),
        (Kind::Zsr, false) => format!("{}: valid ZSR number", p.text),
        (Kind::Zsr, true) => format!(
            "{}: valid ZSR number by kim-cm's reading: its digit sum is divisible by 26, for which the SASIS rule names no letter; kim-cm takes Z",
            p.text
        ),
    }
}

/// A date of the service, placeholders in words.
fn day(v: Option<&Value>) -> String {
    match v.and_then(Value::as_str) {
        Some(d) if d.starts_with("0001-01-01") => "open".into(),
        Some(d) if d.starts_with("9999-12-31") => "open".into(),
        Some(d) => d.chars().take(10).collect(),
        None => "-".into(),
    }
}

/// Every `validityPeriods` list in the record, with where it is.
fn periods(v: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "validityPeriods" {
                    for p in x.as_array().into_iter().flatten() {
                        let from = p
                            .get("validFrom")
                            .or_else(|| p.get("from"))
                            .or_else(|| p.get("startDate"));
                        let to = p
                            .get("validTo")
                            .or_else(|| p.get("to"))
                            .or_else(|| p.get("endDate"));
                        out.push((
                            if path.is_empty() {
                                "number".into()
                            } else {
                                path.to_string()
                            },
                            day(from),
                            day(to),
                        ));
                    }
                } else {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    periods(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                periods(x, path, out);
            }
        }
        _ => {}
    }
}

fn show(s: &mirror::Stored) -> String {
    let mut out = format!(
        "number   {}\nkind     {}\n",
        s.number,
        if s.kind == "k" {
            "K number"
        } else {
            "ZSR number"
        }
    );
    match s.ended_at {
        Some(t) if !s.active => out.push_str(&format!(
            "state    ended {} (no longer delivered by the service)\n",
            crate::sidecar::day_text(t)
        )),
        _ => out.push_str("state    active\n"),
    }
    out.push_str(&format!(
        "updated  {}\n",
        crate::sidecar::day_text(s.updated)
    ));
    let mut list = Vec::new();
    periods(&s.record, "", &mut list);
    if !list.is_empty() {
        out.push_str("validity periods:\n");
        for (what, from, to) in list {
            out.push_str(&format!("  {what:<40} {from:>10} .. {to}\n"));
        }
    }
    out
}
