//! A real directory for the sandbox and the tests: OpenLDAP `slapd` with a VZD-like
//! tree (`dc=data,dc=vzd`), over LDAPS on 127.0.0.1 and a free high port, from a
//! config and an mdb database in a fresh temp folder. Entries are loaded with
//! `slapadd` before the server starts. Needs the Debian package `slapd`; this is no
//! simulator: the directory is the real OpenLDAP server, only the data are made up.
//!
//! The VZD's own schema is not public as an OpenLDAP file; `komLeData` and the
//! auxiliary class that carries it are declared here under a UUID-based OID
//! (X.667, `2.25.…`) that needs no registration. Certificates sit on
//! `inetOrgPerson` + `pkiUser` entries, as `userCertificate;binary`.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// The VZD's search base.
pub const BASE: &str = "dc=data,dc=vzd";
/// Bound on waiting for slapd to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

const SCHEMA: &str = "\
attributetype ( 2.25.161838486424146397315405536946744384129.1 NAME 'komLeData'
  DESC 'KIM version and address, <version>,<mail> (gemSpec_VZD)'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 2.25.161838486424146397315405536946744384129.2 NAME 'vzdKimHolder'
  SUP top AUXILIARY MAY ( komLeData ) )
";

/// One holder entry of the test VZD.
#[derive(Clone, Debug, Default)]
pub struct VzdEntry {
    pub mail: String,
    /// `komLeData` values, e.g. `1.5+,a@x.de`; none for a 1.0 Clientmodul.
    pub kom_le_data: Vec<String>,
    /// DER certificates on the holder entry itself.
    pub certs: Vec<Vec<u8>>,
    /// DER certificates on child entries (one each) carrying the same `mail`.
    pub child_certs: Vec<Vec<u8>>,
}

impl VzdEntry {
    pub fn new(mail: &str, version: Option<&str>, certs: Vec<Vec<u8>>) -> VzdEntry {
        VzdEntry {
            mail: mail.to_string(),
            kom_le_data: version.map(|v| format!("{v},{mail}")).into_iter().collect(),
            certs,
            child_certs: Vec::new(),
        }
    }
}

/// TLS of the server: its certificate and key, and which client CAs it demands.
pub struct SlapdTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// `Some(ca file)`: a client certificate chaining to it is required.
    pub client_ca: Option<&'a Path>,
}

/// A running slapd; stopped (by pid) on drop.
pub struct Slapd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Slapd {
    /// Loads `entries` and starts slapd; blocks until it listens (at most
    /// START_TIMEOUT).
    pub fn start(entries: &[VzdEntry], tls: &SlapdTls<'_>) -> io::Result<Slapd> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        std::fs::write(d.join("vzd.schema"), SCHEMA)?;
        std::fs::create_dir_all(d.join("db"))?;
        let mut conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {dir}/vzd.schema\n\
             pidfile {dir}/slapd.pid\n\
             argsfile {dir}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n",
            dir = d.display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        match tls.client_ca {
            Some(ca) => conf.push_str(&format!(
                "TLSCACertificateFile {}\nTLSVerifyClient demand\n",
                ca.display()
            )),
            None => conf.push_str("TLSVerifyClient never\n"),
        }
        conf.push_str(&format!(
            "database mdb\nmaxsize 10485760\nsuffix \"{BASE}\"\nrootdn \"cn=admin,{BASE}\"\n\
             directory {}/db\naccess to * by * read\n",
            d.display()
        ));
        let conf_path = d.join("slapd.conf");
        std::fs::write(&conf_path, conf)?;
        let ldif_path = d.join("vzd.ldif");
        std::fs::write(&ldif_path, ldif(entries))?;
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .map_err(|e| not_installed(SLAPADD, e))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "slapadd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = free_port()?;
        let log = std::fs::File::create(d.join("slapd.log"))?;
        // -d keeps slapd in the foreground, so it is our child and stops with us
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!("ldaps://127.0.0.1:{port}/"))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| not_installed(SLAPD, e))?;
        let mut s = Slapd {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "slapd did not listen:\n{}",
                    s.log()
                )));
            }
            if let Some(Ok(Some(status))) = s.child.as_mut().map(|c| c.try_wait()) {
                return Err(io::Error::other(format!(
                    "slapd exited with {status}:\n{}",
                    s.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Freezes the server (SIGSTOP): connections are taken by the kernel but
    /// nothing is answered, as with a hung directory. `resume` thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Stops the server: the directory is down from now on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The programs of Debian's package `slapd`.
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

fn not_installed(program: &str, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        io::Error::other(format!(
            "{program} not found: install Debian's package slapd (apt-get install slapd) for a directory in OpenLDAP"
        ))
    } else {
        io::Error::other(format!("cannot run {program}: {e}"))
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The LDIF of the tree: the base, then each holder with its certificate children.
fn ldif(entries: &[VzdEntry]) -> String {
    let mut s = format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: VZD\ndc: data\n\n"
    );
    for (i, e) in entries.iter().enumerate() {
        let uid = format!("holder{i}");
        s.push_str(&format!(
            "dn: uid={uid},{BASE}\nobjectClass: inetOrgPerson\nobjectClass: pkiUser\n\
             objectClass: vzdKimHolder\nuid: {uid}\ncn: {mail}\nsn: {uid}\nmail: {mail}\n",
            mail = e.mail
        ));
        for v in &e.kom_le_data {
            s.push_str(&format!("komLeData: {v}\n"));
        }
        for c in &e.certs {
            s.push_str(&format!("userCertificate;binary:: {}\n", b64(c)));
        }
        s.push('\n');
        for (j, c) in e.child_certs.iter().enumerate() {
            s.push_str(&format!(
                "dn: cn=cert{j},uid={uid},{BASE}\nobjectClass: inetOrgPerson\nobjectClass: pkiUser\n\
                 cn: cert{j}\nsn: {uid}\nmail: {mail}\nuserCertificate;binary:: {}\n\n",
                b64(c),
                mail = e.mail
            ));
        }
    }
    s
}
