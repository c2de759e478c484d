//! A whole simulated Fachdienst: SMTPS submission and POP3S on loopback with a test
//! CA made on the fly, accounts with passwords kept across runs, mailboxes on disk.
//! The sandbox and the benchmarks start one of these.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ca;
use super::mailstore::MailStore;
use super::pop3::TestbedPop3;
use super::smtp::TestbedSmtp;
use super::users::Users;
use crate::net::TlsMode;
use crate::spool::SpoolSettings;

/// The simulated MTA accepts mails up to this size: sealed mails are larger than the
/// client's, so this is above the proxy's 700 MiB.
pub const FACHDIENST_MAX_SIZE: u64 = 1024 * 1024 * 1024;
/// How long the simulated servers wait for a client.
pub const FACHDIENST_TIMEOUT: Duration = Duration::from_secs(300);

/// An account of the simulated Fachdienst.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdAccount {
    pub address: String,
    pub password: String,
}

/// A running simulated Fachdienst. Dropping it stops its servers.
pub struct Fachdienst {
    pub smtps: SocketAddr,
    pub pop3s: SocketAddr,
    /// The AccountLimit service (HTTPS, any free port).
    pub limits: SocketAddr,
    /// The KIM Attachment Service (HTTPS, any free port).
    pub kas: SocketAddr,
    pub kas_state: Arc<super::kas::Kas>,
    pub tls: ca::TlsFiles,
    pub accounts: Vec<FdAccount>,
    pub store: Arc<MailStore>,
    pub dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fachdienst {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The accounts, made once per folder with random passwords and kept in
/// `accounts.json` (readable by the owner only).
fn load_or_make_accounts(dir: &Path, addresses: &[&str]) -> std::io::Result<Vec<FdAccount>> {
    let path = dir.join("accounts.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(a) = serde_json::from_str::<Vec<FdAccount>>(&text) {
            if addresses.iter().all(|x| a.iter().any(|s| s.address == *x)) {
                return Ok(a);
            }
        }
    }
    let accounts: Vec<FdAccount> = addresses
        .iter()
        .map(|a| FdAccount {
            address: a.to_string(),
            password: format!("sandbox-{}", hex::encode(rand::random::<[u8; 6]>())),
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    ca::write_private(&path, serde_json::to_string_pretty(&accounts)?.as_bytes())?;
    Ok(accounts)
}

async fn listen(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on 127.0.0.1:{port}: {e} (is another sandbox running? try --any-ports)"),
        )
    })
}

/// The TLS files in `dir`, made on first use.
pub fn tls_files(dir: &Path) -> Result<ca::TlsFiles, Box<dyn std::error::Error + Send + Sync>> {
    let f = ca::TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    if f.ca_cert.exists() && f.server_cert.exists() && f.server_key.exists() {
        Ok(f)
    } else {
        ca::make_tls_ca(dir, &[])
    }
}

/// Starts the simulated Fachdienst with state in `dir` (port 0: any free port).
pub async fn start(
    dir: &Path,
    smtp_port: u16,
    pop3_port: u16,
    addresses: &[&str],
) -> Result<Fachdienst, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    let tls = tls_files(&dir.join("tls"))?;
    let accounts = load_or_make_accounts(dir, addresses)?;
    let mut users = Users::new();
    for a in &accounts {
        users.add(&a.address, &a.password);
    }
    let users = Arc::new(users);
    let store = Arc::new(MailStore::new(dir.join("mail"))?);
    let acceptor = Arc::new(crate::net::tls::acceptor(
        &tls.server_cert,
        &tls.server_key,
    )?);
    let spool = SpoolSettings {
        dir: dir.join("spool"),
        memory_limit: 1024 * 1024,
    };
    let smtp_l = listen(smtp_port).await?;
    let pop3_l = listen(pop3_port).await?;
    let smtps = smtp_l.local_addr()?;
    let pop3s = pop3_l.local_addr()?;
    let smtp_settings = Arc::new(crate::smtp::server::Settings {
        name: "mta.fachdienst.kim.test".into(),
        tls: TlsMode::Implicit,
        acceptor: Some(acceptor.clone()),
        timeout: FACHDIENST_TIMEOUT,
        login_timeout: FACHDIENST_TIMEOUT,
        login_throttle: None,
        spool: spool.clone(),
    });
    let smtp_backend = Arc::new(TestbedSmtp {
        store: store.clone(),
        users: users.clone(),
        max_size: FACHDIENST_MAX_SIZE,
        name: "mta.fachdienst.kim.test".into(),
    });
    let pop3_settings = Arc::new(crate::pop3::server::Settings {
        name: "pop.fachdienst.kim.test".into(),
        tls: TlsMode::Implicit,
        acceptor: Some(acceptor.clone()),
        timeout: FACHDIENST_TIMEOUT,
        login_timeout: FACHDIENST_TIMEOUT,
        login_throttle: None,
        spool,
    });
    let limits_l = listen(0).await?;
    let limits = limits_l.local_addr()?;
    let account_limits = super::limits::load(dir);
    let kas_dir = dir.join("kas");
    std::fs::create_dir_all(&kas_dir)?;
    let kas_state = Arc::new(super::kas::Kas::new(
        &kas_dir,
        users.clone(),
        &account_limits,
    ));
    let kas_l = listen(0).await?;
    let kas = kas_l.local_addr()?;
    let kas_task = tokio::spawn(super::kas::serve(
        kas_l,
        acceptor.clone(),
        kas_state.clone(),
    ));
    let limits_task = tokio::spawn(super::limits::serve(
        limits_l,
        acceptor.clone(),
        users.clone(),
        Arc::new(account_limits),
    ));
    let pop3_backend = Arc::new(TestbedPop3::new(store.clone(), users));
    let tasks = vec![
        limits_task,
        kas_task,
        tokio::spawn(crate::smtp::server::serve(
            smtp_l,
            smtp_settings,
            smtp_backend,
        )),
        tokio::spawn(crate::pop3::server::serve_pop3(
            pop3_l,
            pop3_settings,
            pop3_backend,
        )),
    ];
    Ok(Fachdienst {
        smtps,
        pop3s,
        limits,
        kas,
        kas_state,
        tls,
        accounts,
        store,
        dir: dir.to_path_buf(),
        tasks,
    })
}
