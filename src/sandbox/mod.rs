//! `kim-cm sandbox`: the whole system on one machine. A simulated Fachdienst (SMTPS
//! and POP3S with a test CA made on the fly, mailboxes on disk) and the proxy,
//! configured against it from a real config file, all on loopback.

pub mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::net::TlsMode;
use crate::serve::{self, Running};
use crate::spool::SpoolSettings;
use crate::testbed::ca;
use crate::testbed::mailstore::MailStore;
use crate::testbed::pop3::TestbedPop3;
use crate::testbed::smtp::TestbedSmtp;
use crate::testbed::users::Users;

/// The sandbox's accounts: two practices.
pub const SANDBOX_ACCOUNTS: [&str; 2] = ["alice@praxis-a.kim.test", "bob@praxis-b.kim.test"];
/// The simulated Fachdienst accepts mails up to this size (sealed mails are larger than
/// the client's, so above the proxy's 700 MiB).
pub const FACHDIENST_MAX_SIZE: u64 = 1024 * 1024 * 1024;
/// The Konnektor call context used in the sandbox user names.
pub const SANDBOX_CONTEXT: &str = "1#KOM_LE#7";

/// Fixed ports, so a mail client configured once keeps working.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub proxy_smtp: u16,
    pub proxy_pop3: u16,
    pub fd_smtp: u16,
    pub fd_pop3: u16,
}

impl Ports {
    pub const DEFAULT: Ports = Ports {
        proxy_smtp: 2525,
        proxy_pop3: 2110,
        fd_smtp: 2465,
        fd_pop3: 2995,
    };
    /// Ports chosen by the system (for tests running side by side).
    pub const ANY: Ports = Ports {
        proxy_smtp: 0,
        proxy_pop3: 0,
        fd_smtp: 0,
        fd_pop3: 0,
    };
}

/// What a mail client or a script needs; also written as `sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub proxy_smtp: SocketAddr,
    pub proxy_pop3: SocketAddr,
    pub fachdienst_smtps: SocketAddr,
    pub fachdienst_pop3s: SocketAddr,
    pub ca_file: PathBuf,
    pub config_file: PathBuf,
    pub accounts: Vec<SandboxAccount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxAccount {
    pub address: String,
    pub password: String,
    pub smtp_user: String,
    pub pop3_user: String,
}

/// A running sandbox. Dropping it stops everything.
pub struct Sandbox {
    pub info: SandboxInfo,
    _proxy: Running,
    fd_tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for t in &self.fd_tasks {
            t.abort();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    address: String,
    password: String,
}

/// The simulated Fachdienst's accounts, made once per data directory.
fn load_or_make_accounts(dir: &Path) -> std::io::Result<Vec<StoredAccount>> {
    let path = dir.join("accounts.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(a) = serde_json::from_str::<Vec<StoredAccount>>(&text) {
            return Ok(a);
        }
    }
    let accounts: Vec<StoredAccount> = SANDBOX_ACCOUNTS
        .iter()
        .map(|a| StoredAccount {
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

/// Starts the simulated Fachdienst and the proxy in `data_dir`.
pub async fn start(data_dir: &Path, ports: Ports) -> Result<Sandbox, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let tls_dir = data_dir.join("tls");
    let tls = match (tls_dir.join("ca.pem"), tls_dir.join("server.pem"), tls_dir.join("server.key")) {
        (c, s, k) if c.exists() && s.exists() && k.exists() => ca::TlsFiles {
            ca_cert: c,
            server_cert: s,
            server_key: k,
        },
        _ => ca::make_tls_ca(&tls_dir, &[])?,
    };

    // the simulated Fachdienst
    let fd_dir = data_dir.join("fachdienst");
    let accounts = load_or_make_accounts(&fd_dir)?;
    let mut users = Users::new();
    for a in &accounts {
        users.add(&a.address, &a.password);
    }
    let users = Arc::new(users);
    let store = Arc::new(MailStore::new(fd_dir.join("mail"))?);
    let acceptor = Arc::new(crate::net::tls::acceptor(&tls.server_cert, &tls.server_key)?);
    let fd_spool = SpoolSettings {
        dir: fd_dir.join("spool"),
        memory_limit: 1024 * 1024,
    };
    let timeout = std::time::Duration::from_secs(300);
    let fd_smtp = listen(ports.fd_smtp).await?;
    let fd_pop3 = listen(ports.fd_pop3).await?;
    let fd_smtp_addr = fd_smtp.local_addr()?;
    let fd_pop3_addr = fd_pop3.local_addr()?;
    let smtp_settings = Arc::new(crate::smtp::server::Settings {
        name: "mta.fachdienst.kim.test".into(),
        tls: TlsMode::Implicit,
        acceptor: Some(acceptor.clone()),
        timeout,
        spool: fd_spool.clone(),
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
        acceptor: Some(acceptor),
        timeout,
        spool: fd_spool,
    });
    let pop3_backend = Arc::new(TestbedPop3::new(store.clone(), users.clone()));
    let fd_tasks = vec![
        tokio::spawn(crate::smtp::server::serve(fd_smtp, smtp_settings, smtp_backend)),
        tokio::spawn(crate::pop3::server::serve_pop3(fd_pop3, pop3_settings, pop3_backend)),
    ];

    // the proxy, from a real config file
    let config_file = data_dir.join("kim-cm.toml");
    std::fs::write(&config_file, sandbox_config(&data_dir, ports, fd_smtp_addr, fd_pop3_addr))?;
    let cfg = Arc::new(Config::load(&config_file)?);
    let proxy = serve::start(cfg).await?;

    let accounts = accounts
        .iter()
        .map(|a| SandboxAccount {
            address: a.address.clone(),
            password: a.password.clone(),
            smtp_user: format!("{}#{}#{}", a.address, fd_smtp_addr, SANDBOX_CONTEXT),
            pop3_user: format!("{}#{}#{}", a.address, fd_pop3_addr, SANDBOX_CONTEXT),
        })
        .collect();
    let info = SandboxInfo {
        proxy_smtp: proxy.smtp[0],
        proxy_pop3: proxy.pop3[0],
        fachdienst_smtps: fd_smtp_addr,
        fachdienst_pop3s: fd_pop3_addr,
        ca_file: tls.ca_cert.clone(),
        config_file,
        accounts,
    };
    ca::write_private(&data_dir.join("sandbox.json"), serde_json::to_string_pretty(&info)?.as_bytes())?;
    Ok(Sandbox {
        info,
        _proxy: proxy,
        fd_tasks,
    })
}

fn sandbox_config(data_dir: &Path, ports: Ports, fd_smtp: SocketAddr, fd_pop3: SocketAddr) -> String {
    let mut s = format!(
        "# Written by `kim-cm sandbox`: the proxy's configuration against the simulated Fachdienst.\n\
         [proxy]\nname = \"kim-cm-sandbox\"\ndata_dir = \"{dir}/proxy\"\n\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:{ps}\"\ntls = \"plain\"\n\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:{pp}\"\ntls = \"plain\"\n\n\
         [upstream]\nca_file = \"{dir}/tls/ca.pem\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n",
        dir = data_dir.display(),
        ps = ports.proxy_smtp,
        pp = ports.proxy_pop3,
    );
    for a in SANDBOX_ACCOUNTS {
        s.push_str(&format!(
            "\n[[account]]\naddress = \"{a}\"\nsmtp_server = \"{fd_smtp}\"\npop3_server = \"{fd_pop3}\"\n\
             mandant_id = \"1\"\nclient_system_id = \"KOM_LE\"\nworkplace_id = \"7\"\n"
        ));
    }
    s
}

impl SandboxInfo {
    /// The text printed for a person setting up a mail client.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "kim-cm sandbox is running (Ctrl-C stops it).\n\n\
             Point your mail client at kim-cm (no TLS needed: loopback only):\n  \
             outgoing  SMTP  {}   authentication: normal password (PLAIN/LOGIN)\n  \
             incoming  POP3  {}   authentication: normal password\n\nAccounts:\n",
            self.proxy_smtp, self.proxy_pop3
        );
        for a in &self.accounts {
            s.push_str(&format!(
                "  {}\n    password   {}\n    SMTP user  {}\n    POP3 user  {}\n    (the plain address works as user name too)\n",
                a.address, a.password, a.smtp_user, a.pop3_user
            ));
        }
        s.push_str(&format!(
            "\nSimulated Fachdienst: SMTPS {}, POP3S {}, CA {}\nProxy config: {}\n",
            self.fachdienst_smtps,
            self.fachdienst_pop3s,
            self.ca_file.display(),
            self.config_file.display()
        ));
        s
    }
}
