//! `kim-cm sandbox`: the whole system on one machine. A simulated Fachdienst (SMTPS
//! and POP3S with a test CA made on the fly, mailboxes on disk) and the proxy,
//! configured against it from a real config file, all on loopback.

pub mod demo;
pub mod sidecars;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::serve::{self, Running};
use crate::testbed::account_manager::{self as am, AmConfig, Issuer, RunningAccountManager};
use crate::testbed::ca;
use crate::testbed::fachdienst::{self, Fachdienst};
use crate::testbed::konnektor::{self, RunningSim, SimConfig, SimContext};
use crate::testbed::pki::{self, TestPki};
use crate::testbed::slapd::{Slapd, SlapdTls, VzdEntry};

/// The sandbox's accounts: two practices.
pub const SANDBOX_ACCOUNTS: [&str; 2] = ["alice@praxis-a.kim.test", "bob@praxis-b.kim.test"];
/// dataTimeToLive the simulated AccountLimit service gives alice (bob: the default).
pub const SANDBOX_ALICE_TTL_DAYS: i64 = 30;
/// The Konnektor call context used in the sandbox user names.
pub const SANDBOX_CONTEXT: &str = "1#KOM_LE#7";

/// Fixed ports, so a mail client configured once keeps working.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub proxy_smtp: u16,
    pub proxy_pop3: u16,
    pub fd_smtp: u16,
    pub fd_pop3: u16,
    /// The admin page.
    pub admin: u16,
    /// The simulated Account Manager.
    pub account_manager: u16,
    /// The simulated SASIS ZSR-Webservice and Helsenorge change feed.
    pub zsr: u16,
    pub helsenorge: u16,
    pub careflex: u16,
    pub nsp: u16,
}

impl Ports {
    pub const DEFAULT: Ports = Ports {
        proxy_smtp: 2525,
        proxy_pop3: 2110,
        fd_smtp: 2465,
        fd_pop3: 2995,
        admin: 2080,
        account_manager: 2443,
        zsr: 2444,
        helsenorge: 2445,
        careflex: 2446,
        nsp: 2447,
    };
    /// Ports chosen by the system (for tests running side by side).
    pub const ANY: Ports = Ports {
        proxy_smtp: 0,
        proxy_pop3: 0,
        fd_smtp: 0,
        fd_pop3: 0,
        admin: 0,
        account_manager: 0,
        zsr: 0,
        helsenorge: 0,
        careflex: 0,
        nsp: 0,
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
    /// The simulated Konnektor's folder (faults.json, requests/), when it runs.
    #[serde(default)]
    pub konnektor_dir: Option<PathBuf>,
    /// The directory's address, when it is in slapd.
    #[serde(default)]
    pub ldap_url: Option<String>,
    /// The admin page and its login.
    pub admin_url: String,
    pub admin_user: String,
    pub admin_password: String,
    /// The simulated Account Manager's root URL and folder (state.json,
    /// faults.json).
    #[serde(default)]
    pub account_manager_url: Option<String>,
    #[serde(default)]
    pub account_manager_dir: Option<PathBuf>,
    /// The simulated sidecar services and the example patients file.
    #[serde(default)]
    pub zsr_url: Option<String>,
    #[serde(default)]
    pub helsenorge_url: Option<String>,
    #[serde(default)]
    pub patients_file: Option<PathBuf>,
    #[serde(default)]
    pub careflex_addr: Option<SocketAddr>,
    #[serde(default)]
    pub nsp_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxAccount {
    pub address: String,
    pub password: String,
    pub smtp_user: String,
    pub pop3_user: String,
    /// What the KIM provider handed the practice for `kim-cm account register`
    /// (gemSpec_CM_KOMLE 2.1).
    #[serde(default)]
    pub reference_id: String,
    #[serde(default)]
    pub initial_password: String,
}

/// Where the sandbox's practices keep their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PKCS#12 files read by kim-cm.
    Software,
    /// Smart cards in the simulated Konnektor (KOM-LE-A_2177), reached over SOAP.
    Konnektor,
}

/// How the sandbox is put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub backend: Backend,
    /// The directory (VZD) in a real OpenLDAP `slapd` over LDAPS instead of a
    /// folder of PEM files.
    pub ldap: bool,
}

impl Options {
    pub const SOFTWARE: Options = Options {
        backend: Backend::Software,
        ldap: false,
    };
}

/// The KIM version the sandbox's accounts have in the LDAP directory: 1.5 and
/// ready for large mails (A_23505).
const SANDBOX_KIM_VERSION: &str = "1.5+";

/// The Konnektor context of the sandbox's login names (SANDBOX_CONTEXT).
const SANDBOX_MANDANT: &str = "1";
const SANDBOX_CLIENT_SYSTEM: &str = "KOM_LE";
const SANDBOX_WORKPLACE: &str = "7";
/// The admin page's user in the sandbox.
const SANDBOX_ADMIN_USER: &str = "admin";
/// The `[[konnektor]]` id in the sandbox's config.
const SANDBOX_KONNEKTOR_ID: &str = "sandbox";

/// A running sandbox. Dropping it stops everything.
pub struct Sandbox {
    pub info: SandboxInfo,
    pub fachdienst: Fachdienst,
    pub konnektor: Option<RunningSim>,
    /// The directory, when it is in slapd (stopped on drop).
    pub ldap: Option<Slapd>,
    pub account_manager: RunningAccountManager,
    pub sidecars: sidecars::Sidecars,
    _proxy: Running,
}

/// Starts the simulated Fachdienst (and, for [`Backend::Konnektor`], the simulated
/// Konnektor; with `ldap`, slapd as the directory) and the proxy in `data_dir`.
pub async fn start(
    data_dir: &Path,
    ports: Ports,
    options: Options,
) -> Result<Sandbox, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    // the AccountLimit service's answers: alice's practice keeps mails 30 days
    let limits_file = data_dir.join("fachdienst").join("limits.json");
    if !limits_file.exists() {
        std::fs::create_dir_all(data_dir.join("fachdienst"))?;
        std::fs::write(
            &limits_file,
            serde_json::json!({ SANDBOX_ACCOUNTS[0]: {"dataTimeToLive": SANDBOX_ALICE_TTL_DAYS} })
                .to_string(),
        )?;
    }
    let fd = fachdienst::start(
        &data_dir.join("fachdienst"),
        ports.fd_smtp,
        ports.fd_pop3,
        &SANDBOX_ACCOUNTS,
    )
    .await?;

    // the practices' keys and the directory of encryption certificates
    let pki = pki::make(&data_dir.join("pki"), &SANDBOX_ACCOUNTS)?;
    let konnektor = match options.backend {
        Backend::Software => None,
        Backend::Konnektor => {
            let password = std::fs::read_to_string(&pki.password_file)?;
            let context = SimContext {
                mandant: SANDBOX_MANDANT.into(),
                client_system: SANDBOX_CLIENT_SYSTEM.into(),
                workplace: SANDBOX_WORKPLACE.into(),
            };
            let config = SimConfig::from_pki(&pki, password.trim(), context);
            Some(konnektor::start(&data_dir.join("konnektor"), config).await?)
        }
    };
    let account_manager = start_account_manager(&data_dir, ports, &fd, &pki).await?;
    // the proxy, from a real config file
    let config_file = data_dir.join("kim-cm.toml");
    let mut text = sandbox_config(&data_dir, ports, &fd, &pki);
    text = text.replace(
        "kas_url = ",
        &format!(
            "# the Account Manager, for `kim-cm account` and the admin page\naccount_manager_url = \"{}\"\nkas_url = ",
            account_manager.base_url
        ),
    );
    // the admin page, with a password made for this sandbox
    let admin_password = sandbox_admin_password(&data_dir)?;
    text.push_str(&format!(
        "\n# the local admin page (its password: sandbox.json)\n[admin]\naddress = \"127.0.0.1:{}\"\nuser = \"{SANDBOX_ADMIN_USER}\"\npassword_hash_file = \"{}\"\n",
        ports.admin,
        data_dir.join("admin-password.hash").display()
    ));
    let (sidecars, sections) = sidecars::start(&data_dir, ports, &fd.tls).await?;
    text.push_str(&sections);
    if let Some(k) = &konnektor {
        text = with_konnektor(&text, k);
    }
    let ldap = if options.ldap {
        let slapd = start_ldap(&fd, &pki).await?;
        text = with_ldap(&text, &slapd, &fd.tls.ca_cert);
        Some(slapd)
    } else {
        None
    };
    std::fs::write(&config_file, text)?;
    let cfg = Arc::new(Config::load(&config_file)?);
    let proxy = serve::start(cfg).await?;
    let admin_addr = proxy.admin.ok_or("the admin page did not start")?;

    let accounts = fd
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| SandboxAccount {
            address: a.address.clone(),
            password: a.password.clone(),
            smtp_user: format!("{}#{}#{}", a.address, fd.smtps, SANDBOX_CONTEXT),
            pop3_user: format!("{}#{}#{}", a.address, fd.pop3s, SANDBOX_CONTEXT),
            reference_id: sandbox_reference_id(i),
            initial_password: sandbox_initial_password(i),
        })
        .collect();
    let info = SandboxInfo {
        proxy_smtp: proxy.smtp[0],
        proxy_pop3: proxy.pop3[0],
        fachdienst_smtps: fd.smtps,
        fachdienst_pop3s: fd.pop3s,
        ca_file: fd.tls.ca_cert.clone(),
        config_file,
        accounts,
        konnektor_dir: konnektor.as_ref().map(|k| k.dir.clone()),
        ldap_url: ldap.as_ref().map(Slapd::url),
        admin_url: format!("http://{admin_addr}/"),
        admin_user: SANDBOX_ADMIN_USER.into(),
        admin_password,
        account_manager_url: Some(account_manager.base_url.clone()),
        account_manager_dir: Some(account_manager.dir.clone()),
        zsr_url: Some(sidecars.zsr.base_url()),
        helsenorge_url: Some(sidecars.helsenorge.base_url.clone()),
        patients_file: Some(sidecars.patients_file.clone()),
        careflex_addr: Some(sidecars.careflex.addr),
        nsp_url: Some(sidecars.nsp.base_url.clone()),
    };
    ca::write_private(
        &data_dir.join("sandbox.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    Ok(Sandbox {
        info,
        fachdienst: fd,
        konnektor,
        ldap,
        account_manager,
        sidecars,
        _proxy: proxy,
    })
}

/// The reference id the simulated provider gave the `i`-th sandbox account.
fn sandbox_reference_id(i: usize) -> String {
    format!("REF-SANDBOX-{}", i + 1)
}

/// The initial password the simulated provider gave the `i`-th sandbox account
/// (a test value, printed by `describe`).
fn sandbox_initial_password(i: usize) -> String {
    format!("ini-sandbox-{}", i + 1)
}

/// The simulated Account Manager: TLS with the Fachdienst's certificate (so the
/// one `[upstream] ca_file` trusts it), createCert issuing from the sandbox's CA,
/// tokens checked against that CA, the two accounts provisioned but not yet
/// registered.
async fn start_account_manager(
    data_dir: &Path,
    ports: Ports,
    fd: &Fachdienst,
    pki: &TestPki,
) -> Result<RunningAccountManager, Box<dyn std::error::Error + Send + Sync>> {
    let accounts = (0..SANDBOX_ACCOUNTS.len())
        .map(|i| {
            am::SimAccount::provisioned(&sandbox_reference_id(i), &sandbox_initial_password(i))
        })
        .collect();
    let config = AmConfig {
        tls: Some(fd.tls.clone()),
        issuer: Some(Issuer {
            ca_cert: pki.ca_cert.clone(),
            ca_key: data_dir.join("pki").join(pki::CA_KEY_FILE),
        }),
        token_ca: Some(pki.ca_cert.clone()),
        initial: am::State {
            accounts,
            ..am::State::default()
        },
    };
    am::start(
        &data_dir.join("account-manager"),
        ports.account_manager,
        config,
    )
    .await
}

/// The admin page's password, made once and kept in the data folder (with its hash
/// beside it, which the config names).
fn sandbox_admin_password(
    data_dir: &Path,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let plain = data_dir.join("admin-password");
    let hashed = data_dir.join("admin-password.hash");
    if let (Ok(p), true) = (std::fs::read_to_string(&plain), hashed.exists()) {
        return Ok(p.trim().to_string());
    }
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let password = hex::encode(bytes);
    let hash = crate::admin::web::password::hash(&password)?;
    ca::write_private(&plain, password.as_bytes())?;
    ca::write_private(&hashed, format!("{hash}\n").as_bytes())?;
    Ok(password)
}

/// slapd with the sandbox's accounts (their encryption certificates and KIM
/// version), over LDAPS with the Fachdienst's test server certificate.
async fn start_ldap(
    fd: &Fachdienst,
    pki: &TestPki,
) -> Result<Slapd, Box<dyn std::error::Error + Send + Sync>> {
    let mut entries = Vec::new();
    for a in &pki.accounts {
        let pem = std::fs::read(pki.directory.join(format!("{}.pem", a.address)))?;
        let certs = openssl::x509::X509::stack_from_pem(&pem)?
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(VzdEntry::new(&a.address, Some(SANDBOX_KIM_VERSION), certs));
    }
    let (cert, key) = (fd.tls.server_cert.clone(), fd.tls.server_key.clone());
    // slapadd and the wait for the port block: off the runtime's threads
    let slapd = tokio::task::spawn_blocking(move || {
        let tls = SlapdTls {
            cert: &cert,
            key: &key,
            client_ca: None,
        };
        Slapd::start(&entries, &tls)
    })
    .await??;
    Ok(slapd)
}

/// The config with the directory in slapd instead of the folder.
fn with_ldap(config: &str, slapd: &Slapd, ca: &Path) -> String {
    let mut out = String::new();
    for line in config.lines() {
        if line.starts_with("folder = ") {
            out.push_str(&format!(
                "ldap_url = \"{}\"\nldap_base = \"{}\"\nldap_ca_file = \"{}\"\n",
                slapd.url(),
                crate::testbed::slapd::BASE,
                ca.display()
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The config with the accounts' keys on the simulated Konnektor's cards instead
/// of in PKCS#12 files.
fn with_konnektor(config: &str, k: &RunningSim) -> String {
    let mut out = String::new();
    for line in config.lines() {
        if line.starts_with("signing_pkcs12 = ") {
            out.push_str(&format!("konnektor = \"{SANDBOX_KONNEKTOR_ID}\"\n"));
        } else if line.starts_with("encryption_pkcs12 = ")
            || line.starts_with("aut_pkcs12 = ")
            || line.starts_with("pkcs12_password_file = ")
        {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n# the practices' cards: the simulated Konnektor\n[[konnektor]]\nid = \"{SANDBOX_KONNEKTOR_ID}\"\nsds_url = \"{}\"\nca_file = \"{}\"\n",
        k.sds_url,
        k.tls_ca.display()
    ));
    out
}

/// The proxy's config against `fd`, as an admin would write it.
pub fn sandbox_config(data_dir: &Path, ports: Ports, fd: &Fachdienst, pki: &TestPki) -> String {
    let (fd_smtp, fd_pop3) = (fd.smtps, fd.pop3s);
    let mut s = format!(
        "# Written by `kim-cm sandbox`: the proxy's configuration against the simulated Fachdienst.\n\
         [proxy]\nname = \"kim-cm-sandbox\"\ndata_dir = \"{dir}/proxy\"\n\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:{ps}\"\ntls = \"plain\"\n\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:{pp}\"\ntls = \"plain\"\n\n\
         [upstream]\nca_file = \"{ca}\"\nsmtp_tls = \"implicit\"\npop3_tls = \"implicit\"\n\
         account_limit_url = \"{limits}\"\n\
         # client mails over 15 MiB go to the KIM Attachment Service\n\
         kas_url = \"{kas}\"\n\n\
         # recipients' encryption certificates, and the CA signatures must chain to\n\
         [directory]\nfolder = \"{directory}\"\n\n[trust]\nca_file = \"{trust}\"\n",
        dir = data_dir.display(),
        ca = fd.tls.ca_cert.display(),
        directory = pki.directory.display(),
        limits = crate::testbed::limits::base_url(fd.limits),
        kas = crate::testbed::kas::base_url(fd.kas),
        trust = pki.ca_cert.display(),
        ps = ports.proxy_smtp,
        pp = ports.proxy_pop3,
    );
    for a in &pki.accounts {
        s.push_str(&format!(
            "\n[[account]]\naddress = \"{addr}\"\nsmtp_server = \"{fd_smtp}\"\npop3_server = \"{fd_pop3}\"\n\
             mandant_id = \"{SANDBOX_MANDANT}\"\nclient_system_id = \"{SANDBOX_CLIENT_SYSTEM}\"\nworkplace_id = \"{SANDBOX_WORKPLACE}\"\n\
             signing_pkcs12 = \"{sig}\"\nencryption_pkcs12 = \"{enc}\"\naut_pkcs12 = \"{aut}\"\npkcs12_password_file = \"{pw}\"\n",
            addr = a.address,
            sig = a.signing_pkcs12.display(),
            enc = a.encryption_pkcs12.display(),
            aut = a.aut_pkcs12.display(),
            pw = pki.password_file.display(),
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
                "  {}\n    password   {}\n    SMTP user  {}\n    POP3 user  {}\n    (the plain address works as user name too)\n    \
                 Account Manager: reference id {}, initial password {}\n",
                a.address, a.password, a.smtp_user, a.pop3_user, a.reference_id, a.initial_password
            ));
        }
        s.push_str(&format!(
            "\nSimulated Fachdienst: SMTPS {}, POP3S {}, CA {}\nProxy config: {}\n",
            self.fachdienst_smtps,
            self.fachdienst_pop3s,
            self.ca_file.display(),
            self.config_file.display()
        ));
        if let Some(dir) = &self.konnektor_dir {
            s.push_str(&format!(
                "Simulated Konnektor: {} (faults.json, requests/)\n",
                dir.display()
            ));
        }
        if let Some(url) = &self.ldap_url {
            s.push_str(&format!("Directory: OpenLDAP slapd at {url}\n"));
        }
        if let (Some(url), Some(dir)) = (&self.account_manager_url, &self.account_manager_dir) {
            s.push_str(&format!(
                "Account Manager: {url} (state.json, faults.json in {})\n  \
                 register: kim-cm account register --config {} --reference-id <id> <address>\n",
                dir.display(),
                self.config_file.display()
            ));
        }
        if let (Some(zsr), Some(hn), Some(patients), Some(cf)) = (
            &self.zsr_url,
            &self.helsenorge_url,
            &self.patients_file,
            &self.careflex_addr,
        ) {
            s.push_str(&format!(
                "Sidecars (simulated):\n  SASIS ZSR {zsr}\n    kim-cm zsr sync --config {c}\n  Helsenorge {hn}\n    kim-cm helsenorge changes --config {c} --patients {}\n  CareFlex {}\n    kim-cm careflex report --config {c} INCIDENTS.csv   (docs/careflex.md)\n  NSP {}\n    kim-cm brs notifications --config {c}   (docs/brs.md)\n",
                patients.display(),
                cf,
                self.nsp_url.as_deref().unwrap_or("-"),
                c = self.config_file.display()
            ));
        }
        s.push_str(&format!(
            "\nAdmin page: {}  user {}  password {}\n",
            self.admin_url, self.admin_user, self.admin_password
        ));
        s
    }
}
