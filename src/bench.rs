//! `kim-cm bench`: measurements that print figures (docs/performance.md).

use clap::Subcommand;

#[derive(Subcommand, Debug, Clone)]
pub enum Bench {
    /// Mails per second through the proxy vs. straight to the simulated Fachdienst.
    Relay {
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 10240)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub async fn run(what: Bench) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match what {
        Bench::Relay { .. } => Err("not built yet".into()),
    }
}
