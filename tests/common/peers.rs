//! A real Fachdienst for integration tests: Postfix (SMTPS and submission with
//! STARTTLS, SASL via Dovecot) and Dovecot (POP3S and POP3 with STLS), started from
//! configs in a fresh temp folder on 127.0.0.2 and free high ports. Nothing in /etc is
//! read or changed beyond what the packages installed; nothing can leave the machine.
//! Needs root and the Debian packages `postfix dovecot-core dovecot-pop3d dovecot-lmtpd`.
//! See tests/common/README.md.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The address both servers listen on. Not 127.0.0.1: Dovecot treats a connection
/// whose remote IP equals its local IP as secured and would allow login without STLS.
pub const HOST: &str = "127.0.0.2";
/// Postfix's and Dovecot's host name (greetings, Received headers).
pub const HOSTNAME: &str = "fachdienst.kim.test";
/// Bound on waiting for all four listeners.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often start() tries again with new ports when one was taken in between.
const START_ATTEMPTS: u32 = 3;

#[derive(Clone, Debug)]
pub struct PeerUser {
    pub address: String,
    pub password: String,
}

impl PeerUser {
    pub fn new(address: &str, password: &str) -> PeerUser {
        PeerUser {
            address: address.to_string(),
            password: password.to_string(),
        }
    }
}

/// A running Postfix + Dovecot pair; both stopped and the temp folder removed on drop
/// (kept when the environment has `KIM_PEERS_KEEP=1`, for debugging).
pub struct RealFachdienst {
    dir: PathBuf,
    ca_pem: PathBuf,
    smtps: u16,
    submission: u16,
    pop3s: u16,
    pop3: u16,
}

struct Tools {
    postfix: PathBuf,
    dovecot: PathBuf,
    openssl: PathBuf,
}

impl RealFachdienst {
    /// Starts Postfix + Dovecot for the given users (their domains are the virtual
    /// mailbox domains). Err with a clear message if postfix/dovecot are missing, we are
    /// not root, or the servers don't come up (then with the log tail).
    pub fn start(users: &[PeerUser]) -> io::Result<RealFachdienst> {
        Self::start_with(users, None)
    }

    /// Like [`start`](Self::start), but both servers demand a TLS client
    /// certificate chaining to `client_ca` (PEM), as a KIM Fachdienst does
    /// (KOM-LE-A_2182-01): Postfix refuses the session without one
    /// (`smtpd_tls_req_ccert`), Dovecot refuses the login
    /// (`auth_ssl_require_client_cert`).
    pub fn start_demanding_client_certs(
        users: &[PeerUser],
        client_ca: &Path,
    ) -> io::Result<RealFachdienst> {
        Self::start_with(users, Some(client_ca))
    }

    fn start_with(users: &[PeerUser], client_ca: Option<&Path>) -> io::Result<RealFachdienst> {
        let tools = find_tools()?;
        if fs::metadata("/proc/self")?.uid() != 0 {
            return Err(other(
                "RealFachdienst needs root: Postfix and Dovecot start as root and drop privileges",
            ));
        }
        check_users(users)?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match start_once(&tools, users, client_ca) {
                Ok(f) => return Ok(f),
                // Another process took one of our ports between probing and binding.
                Err((e, true)) => last = Some(e),
                Err((e, false)) => return Err(e),
            }
        }
        Err(last.unwrap())
    }

    /// Implicit TLS submission (SMTPS); AUTH PLAIN/LOGIN required to send.
    pub fn smtps_port(&self) -> u16 {
        self.smtps
    }
    /// Submission: STARTTLS required, then AUTH.
    pub fn submission_port(&self) -> u16 {
        self.submission
    }
    /// Implicit TLS POP3.
    pub fn pop3s_port(&self) -> u16 {
        self.pop3s
    }
    /// POP3; STLS required before login.
    pub fn pop3_port(&self) -> u16 {
        self.pop3
    }
    /// The IP the servers listen on: "127.0.0.2".
    pub fn host(&self) -> &str {
        HOST
    }
    pub fn smtps_addr(&self) -> SocketAddr {
        SocketAddr::new(HOST.parse().unwrap(), self.smtps)
    }
    pub fn submission_addr(&self) -> SocketAddr {
        SocketAddr::new(HOST.parse().unwrap(), self.submission)
    }
    pub fn pop3s_addr(&self) -> SocketAddr {
        SocketAddr::new(HOST.parse().unwrap(), self.pop3s)
    }
    pub fn pop3_addr(&self) -> SocketAddr {
        SocketAddr::new(HOST.parse().unwrap(), self.pop3)
    }
    /// The CA certificate (PEM) that signed the servers' certificate
    /// (SAN: IP 127.0.0.2, IP 127.0.0.1, DNS localhost).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }
    /// The temp folder holding configs, logs, queue and mail.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The Maildir of a user (may not exist before the first delivery).
    pub fn maildir(&self, address: &str) -> PathBuf {
        let a = address.to_lowercase();
        let (local, domain) = a.rsplit_once('@').unwrap_or((&a, ""));
        self.dir
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// Raw bytes of every message in the user's Maildir (new/ and cur/), sorted by file
    /// name. As stored by Dovecot: LF line ends, with Return-Path, Delivered-To and
    /// Postfix's Received headers in front of the submitted message.
    pub fn maildir_messages(&self, address: &str) -> Vec<Vec<u8>> {
        let md = self.maildir(address);
        let mut files: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(md.join(sub)) {
                for e in rd.flatten() {
                    files.push((e.file_name(), e.path()));
                }
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| fs::read(p).ok())
            .collect()
    }

    /// Polls until at least `n` messages are in the user's Maildir and returns them;
    /// panics with the log tail after `timeout`.
    pub fn wait_for_messages(&self, address: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.maildir_messages(address);
            if m.len() >= n {
                return m;
            }
            if Instant::now() >= end {
                panic!(
                    "{} of {n} messages for {address} after {timeout:?}\n{}",
                    m.len(),
                    tail(&self.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Postfix + Dovecot logs, for debugging failing tests.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        for (name, file) in [("postfix", "postfix.log"), ("dovecot", "dovecot.log")] {
            s.push_str(&format!(
                "==== {name} ({}) ====\n",
                self.dir.join(file).display()
            ));
            s.push_str(&String::from_utf8_lossy(
                &fs::read(self.dir.join(file)).unwrap_or_default(),
            ));
        }
        s
    }

    fn stop(&mut self) {
        let pids: Vec<u32> = [
            self.dir.join("q/pid/master.pid"),
            self.dir.join("dv/master.pid"),
        ]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&p: &u32| p > 1)
        .collect();
        for &pid in &pids {
            signal(pid, "TERM");
        }
        let end = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|&p| alive(p)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        for &pid in &pids {
            if alive(pid) {
                signal(pid, "KILL");
            }
        }
    }
}

impl Drop for RealFachdienst {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("KIM_PEERS_KEEP").is_some_and(|v| v == "1") {
            eprintln!("KIM_PEERS_KEEP=1: kept {}", self.dir.display());
            return;
        }
        // Children (smtpd, lmtp, pop3) may still be on their way out for a moment.
        for _ in 0..50 {
            match fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break,
            }
        }
    }
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_tools() -> io::Result<Tools> {
    let missing = |what: &str| {
        other(format!(
            "RealFachdienst: `{what}` not found. Install the peers with: apt-get update; \
             echo \"postfix postfix/main_mailer_type select No configuration\" | debconf-set-selections; \
             DEBIAN_FRONTEND=noninteractive apt-get install -y postfix dovecot-core dovecot-pop3d dovecot-lmtpd openssl"
        ))
    };
    let tools = Tools {
        postfix: find_tool("postfix").ok_or_else(|| missing("postfix"))?,
        dovecot: find_tool("dovecot").ok_or_else(|| missing("dovecot"))?,
        openssl: find_tool("openssl").ok_or_else(|| missing("openssl"))?,
    };
    for (f, pkg) in [
        ("/usr/lib/dovecot/pop3", "dovecot-pop3d"),
        ("/usr/lib/dovecot/lmtp", "dovecot-lmtpd"),
    ] {
        if !Path::new(f).exists() {
            return Err(missing(pkg));
        }
    }
    Ok(tools)
}

fn check_users(users: &[PeerUser]) -> io::Result<()> {
    if users.is_empty() {
        return Err(other("RealFachdienst: no users given"));
    }
    for u in users {
        let ok_addr = u.address.matches('@').count() == 1
            && !u.address.starts_with('@')
            && !u.address.ends_with('@')
            && u.address
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\":,<>\\/%".contains(&b));
        if !ok_addr {
            return Err(other(format!(
                "RealFachdienst: unusable address {:?}",
                u.address
            )));
        }
        if u.password.is_empty() || u.password.contains(['\n', '\r', '\0']) {
            return Err(other(format!(
                "RealFachdienst: unusable password for {}",
                u.address
            )));
        }
    }
    Ok(())
}

/// A fresh folder /tmp/kfd-XXXXXXXXXX (short: unix socket paths live in it).
fn make_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let c = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
        let mut x =
            nanos ^ ((std::process::id() as u64) << 32) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let dir = PathBuf::from(format!("/tmp/kfd-{:010x}", x & 0xff_ffff_ffff));
        match fs::create_dir(&dir) {
            Ok(()) => {
                // Postfix's and Dovecot's unprivileged processes must reach the sockets.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(other(
        "RealFachdienst: could not create a temp folder in /tmp",
    ))
}

fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((HOST, 0)))
        .collect::<io::Result<_>>()?;
    ls.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn run(cmd: &mut Command, what: &str) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| other(format!("RealFachdienst: {what}: {e}")))?;
    if !out.status.success() {
        return Err(other(format!(
            "RealFachdienst: {what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

fn write(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn uid_gid(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Running and not a zombie (the daemons are reparented; pid 1 may be slow to reap).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(") ").map(|(_, r)| r.as_bytes()[0]),
            Some(b'Z' | b'X')
        ),
        Err(_) => false,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn gen_certs(openssl: &Path, dir: &Path) -> io::Result<()> {
    let d = |f: &str| dir.join(f);
    write(
        &d("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.2, IP:127.0.0.1, DNS:localhost\n",
        0o644,
    )?;
    run(
        Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
            ])
            .args(["-subj", "/O=KIM Test/CN=Test Fachdienst CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(d("ca.key"))
            .arg("-out")
            .arg(d("ca.pem")),
        "openssl req (CA)",
    )?;
    run(
        Command::new(openssl)
            .args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256"])
            .args(["-subj", &format!("/O=KIM Test/CN={HOSTNAME}")])
            .arg("-keyout")
            .arg(d("server.key"))
            .arg("-out")
            .arg(d("server.csr")),
        "openssl req (server)",
    )?;
    run(
        Command::new(openssl)
            .args([
                "x509",
                "-req",
                "-sha256",
                "-days",
                "3650",
                "-set_serial",
                "2",
            ])
            .arg("-in")
            .arg(d("server.csr"))
            .arg("-CA")
            .arg(d("ca.pem"))
            .arg("-CAkey")
            .arg(d("ca.key"))
            .arg("-extfile")
            .arg(d("server.ext"))
            .arg("-out")
            .arg(d("server.pem")),
        "openssl x509 (sign server)",
    )?;
    for f in ["ca.pem", "server.pem", "server.key"] {
        fs::set_permissions(d(f), fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// SHA512-CRYPT ($6$) hash, as Dovecot's `doveadm pw -s SHA512-CRYPT` makes it.
fn hash_password(openssl: &Path, pw: &str) -> io::Result<String> {
    use std::io::Write;
    let mut child = Command::new(openssl)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pw}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !h.starts_with("$6$") {
        return Err(other(format!(
            "RealFachdienst: openssl passwd -6 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(h)
}

fn dovecot_conf(dir: &Path, pop3: u16, pop3s: u16, instance: &str, demand: bool) -> String {
    let d = dir.display();
    let client_certs = if demand {
        // no CRL for the test CA: checking one is switched off, the chain is not.
        // Only POP3 logins need the certificate: Postfix's SASL requests do not
        // say whether its client had one (Postfix checks that itself).
        format!(
            "ssl_ca = <{d}/client-ca.pem\nssl_verify_client_cert = yes\nssl_require_crl = no\n\
             protocol pop3 {{\n  auth_ssl_require_client_cert = yes\n}}\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"# Generated by tests/common/peers.rs: Dovecot as the Fachdienst's POP3 mailbox.
instance_name = {instance}
base_dir = {d}/dv
state_dir = {d}/dvs
protocols = pop3 lmtp
listen = {HOST}
hostname = {HOSTNAME}
postmaster_address = postmaster@{HOSTNAME}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
debug_log_path = {d}/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S "

ssl = required
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_min_protocol = TLSv1.2
{client_certs}disable_plaintext_auth = yes
login_trusted_networks =
auth_mechanisms = plain login
auth_username_format = %Lu

first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_temp_dir = {d}/tmp
pop3_uidl_format = %08Xu%08Xv
default_vsz_limit = 0

passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%Lu {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {d}/users
  default_fields = uid=mail gid=mail home={d}/mail/%Ld/%Ln
}}

service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {pop3s}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener {d}/lmtp {{
    mode = 0666
  }}
}}
service auth {{
  unix_listener {d}/auth {{
    mode = 0666
  }}
}}
"#
    )
}

fn postfix_main_cf(dir: &Path, domains: &[String], demand: bool) -> String {
    let d = dir.display();
    let domains = domains.join(", ");
    let client_certs = if demand {
        format!(
            "smtpd_tls_CAfile = {d}/client-ca.pem\nsmtpd_tls_ask_ccert = yes\nsmtpd_tls_req_ccert = yes\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"# Generated by tests/common/peers.rs: Postfix as the Fachdienst's MTA.
compatibility_level = 3.6
queue_directory = {d}/q
data_directory = {d}/d
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
myhostname = {HOSTNAME}
mydomain = kim.test
myorigin = $myhostname
# Postfix refuses an inet_interfaces address that no interface carries (127.0.0.2
# is routed to lo but not configured on it); the services in master.cf bind
# 127.0.0.2 explicitly.
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32

# Nothing leaves the machine: no relay host, no local domains, every
# non-virtual transport is an error, no smtp client in master.cf, no DNS.
relayhost =
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:local delivery disabled
default_transport = error:no outbound mail
relay_transport = error:no relaying
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
# Leave submitted messages as they are (no address rewriting, no added headers
# beyond Received).
local_header_rewrite_clients =
always_add_missing_headers = no
readme_directory = no

virtual_mailbox_domains = {domains}
virtual_mailbox_maps = texthash:{d}/pf/vmailbox
virtual_transport = lmtp:unix:{d}/lmtp
virtual_mailbox_limit = 0
mailbox_size_limit = 0
message_size_limit = 1073741824

# MAIL FROM must equal the login (553 at MAIL FROM), unknown recipients refused
# at RCPT, only authenticated clients may send.
smtpd_sender_login_maps = texthash:{d}/pf/senders
smtpd_delay_reject = no
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient, permit_sasl_authenticated, reject

smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/auth
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
broken_sasl_auth_clients = no

smtpd_tls_chain_files = {d}/server.key, {d}/server.pem
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
smtp_tls_security_level = none
lmtp_tls_security_level = none
{client_certs}"#
    )
}

fn postfix_master_cf(smtps: u16, submission: u16) -> String {
    format!(
        r#"# Generated by tests/common/peers.rs. No smtp (client), local, virtual or pickup.
{HOST}:{smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
{HOST}:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"#
    )
}

/// Err((error, retry_with_other_ports)).
fn start_once(
    tools: &Tools,
    users: &[PeerUser],
    client_ca: Option<&Path>,
) -> Result<RealFachdienst, (io::Error, bool)> {
    let fatal = |e: io::Error| (e, false);
    let dir = make_temp_dir().map_err(fatal)?;
    let ports = free_ports(4).map_err(fatal)?;
    let f = RealFachdienst {
        ca_pem: dir.join("ca.pem"),
        dir: dir.clone(),
        smtps: ports[0],
        submission: ports[1],
        pop3s: ports[2],
        pop3: ports[3],
    };
    f.prepare(tools, users, client_ca).map_err(fatal)?;
    f.launch(tools).map_err(fatal)?;
    if let Err(e) = f.wait_ready() {
        let log = f.log_text();
        let in_use =
            log.contains("Address already in use") || log.contains("address already in use");
        let msg = format!("{e}\n--- log tail ---\n{}", tail(&log, 60));
        drop(f);
        return Err((other(msg), in_use));
    }
    Ok(f)
}

impl RealFachdienst {
    fn prepare(
        &self,
        tools: &Tools,
        users: &[PeerUser],
        client_ca: Option<&Path>,
    ) -> io::Result<()> {
        let dir = &self.dir;
        gen_certs(&tools.openssl, dir)?;
        if let Some(ca) = client_ca {
            // a copy the daemons (and Postfix's chroot-less smtpd) can read
            fs::copy(ca, dir.join("client-ca.pem"))?;
            fs::set_permissions(dir.join("client-ca.pem"), fs::Permissions::from_mode(0o644))?;
        }
        let demand = client_ca.is_some();

        let (mail_uid, mail_gid) = uid_gid("mail").unwrap_or((8, 8));
        for sub in ["mail", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir(&p)?;
            std::os::unix::fs::chown(&p, Some(mail_uid), Some(mail_gid))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o770))?;
        }
        for sub in ["pf", "q", "d"] {
            fs::create_dir(dir.join(sub))?;
        }
        let (postfix_uid, _) = uid_gid("postfix").ok_or_else(|| other("no `postfix` user"))?;
        std::os::unix::fs::chown(dir.join("d"), Some(postfix_uid), None)?;

        let mut users_file = String::new();
        let mut vmailbox = String::new();
        let mut senders = String::new();
        let mut domains: Vec<String> = Vec::new();
        for u in users {
            let a = u.address.to_lowercase();
            let domain = a.rsplit_once('@').unwrap().1.to_string();
            if !domains.contains(&domain) {
                domains.push(domain);
            }
            let h = hash_password(&tools.openssl, &u.password)?;
            users_file.push_str(&format!("{a}:{{SHA512-CRYPT}}{h}::::::\n"));
            vmailbox.push_str(&format!("{a} ok\n"));
            senders.push_str(&format!("{a} {a}\n"));
        }
        write(&dir.join("users"), &users_file, 0o644)?;
        write(&dir.join("pf/vmailbox"), &vmailbox, 0o644)?;
        write(&dir.join("pf/senders"), &senders, 0o644)?;

        let instance = format!(
            "kfd-{}",
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("kfd-")
        );
        write(
            &dir.join("dovecot.conf"),
            &dovecot_conf(dir, self.pop3, self.pop3s, &instance, demand),
            0o644,
        )?;
        write(
            &dir.join("pf/main.cf"),
            &postfix_main_cf(dir, &domains, demand),
            0o644,
        )?;
        write(
            &dir.join("pf/master.cf"),
            &postfix_master_cf(self.smtps, self.submission),
            0o644,
        )?;
        Ok(())
    }

    fn launch(&self, tools: &Tools) -> io::Result<()> {
        let dir = &self.dir;
        // The daemons inherit the starter's stdout and stderr: pipes there would keep
        // `output()` waiting for ever, so they write into a file.
        let start_log = || -> io::Result<(fs::File, fs::File)> {
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("start.log"))?;
            Ok((f.try_clone()?, f))
        };
        let (o, e) = start_log()?;
        run(
            Command::new(&tools.dovecot)
                .arg("-c")
                .arg(dir.join("dovecot.conf"))
                .stdout(o)
                .stderr(e),
            "dovecot start",
        )
        .map_err(|e| other(format!("{e}\n{}", tail(&self.log_text(), 40))))?;
        run(
            Command::new(&tools.postfix)
                .arg("-c")
                .arg(dir.join("pf"))
                .arg("start")
                .env_remove("MAIL_CONFIG")
                .stdout(start_log()?.0)
                .stderr(start_log()?.1),
            "postfix start",
        )
        .map_err(|e| other(format!("{e}\n{}", tail(&self.log_text(), 40))))?;
        Ok(())
    }

    fn wait_ready(&self) -> io::Result<()> {
        let end = Instant::now() + START_TIMEOUT;
        let mut pending = vec![self.smtps, self.submission, self.pop3s, self.pop3];
        let sockets = [self.dir.join("lmtp"), self.dir.join("auth")];
        loop {
            pending.retain(|&p| {
                TcpStream::connect_timeout(
                    &SocketAddr::new(HOST.parse().unwrap(), p),
                    Duration::from_millis(200),
                )
                .is_err()
            });
            if pending.is_empty() && sockets.iter().all(|s| s.exists()) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(other(format!(
                    "RealFachdienst: not ready after {START_TIMEOUT:?}: ports {pending:?} not accepting \
                     (smtps {}, submission {}, pop3s {}, pop3 {}); sockets present: {:?}",
                    self.smtps,
                    self.submission,
                    self.pop3s,
                    self.pop3,
                    sockets.iter().map(|s| s.exists()).collect::<Vec<_>>()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
