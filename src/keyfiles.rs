//! Files holding secrets (private keys, PKCS#12 containers, passwords, the
//! admin page's hash) must be readable by their owner only: kim-cm refuses to
//! start with one that the group or others may read (issue 9), and says which
//! file and how to fix it, instead of quietly using a key anyone on the
//! machine can copy.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Mode bits that must be clear on a secret file: any access for group and others.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Checks one secret file's permissions (a missing file is left to whoever
/// reads it, which says so in its own words).
pub fn check(path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & OPEN_TO_OTHERS != 0 {
        return Err(format!(
            "{what} {} may be read by other users (mode {mode:03o}): it holds a secret; run `chmod 600 {}` and make the user kim-cm runs as its owner",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Every secret file `cfg` names, with what it is.
pub fn of(cfg: &Config) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |p: &Option<PathBuf>, what: &str| {
        if let Some(p) = p {
            files.push((p.clone(), what.to_string()));
        }
    };
    for l in cfg.smtp_listener.iter().chain(&cfg.pop3_listener) {
        add(&l.key, "the listener's TLS key");
    }
    let up = &cfg.upstream;
    add(&up.client_pkcs12, "[upstream] client_pkcs12");
    add(
        &up.client_pkcs12_password_file,
        "[upstream] client_pkcs12_password_file",
    );
    for a in &cfg.account {
        add(&a.signing_pkcs12, "the account's signing_pkcs12");
        add(&a.encryption_pkcs12, "the account's encryption_pkcs12");
        add(&a.aut_pkcs12, "the account's aut_pkcs12");
        add(
            &a.pkcs12_password_file,
            "the account's pkcs12_password_file",
        );
    }
    for k in &cfg.konnektor {
        add(&k.client_pkcs12, "[[konnektor]] client_pkcs12");
        add(
            &k.client_pkcs12_password_file,
            "[[konnektor]] client_pkcs12_password_file",
        );
        add(&k.password_file, "[[konnektor]] password_file");
    }
    let d = &cfg.directory;
    add(&d.ldap_client_pkcs12, "[directory] ldap_client_pkcs12");
    add(
        &d.ldap_client_pkcs12_password_file,
        "[directory] ldap_client_pkcs12_password_file",
    );
    if let Some(a) = &cfg.admin {
        add(
            &Some(a.password_hash_file.clone()),
            "[admin] password_hash_file",
        );
    }
    if let Some(h) = &cfg.helsenorge {
        add(&Some(h.key_file.clone()), "[helsenorge] key_file");
    }
    if let Some(c) = &cfg.careflex {
        add(&Some(c.password_file.clone()), "[careflex] password_file");
        add(&Some(c.apitoken_file.clone()), "[careflex] apitoken_file");
    }
    if let Some(b) = &cfg.brs {
        add(&Some(b.key_file.clone()), "[brs] key_file");
    }
    if let Some(z) = &cfg.zsr {
        add(
            &Some(z.client_secret_file.clone()),
            "[zsr] client_secret_file",
        );
        add(&Some(z.password_file.clone()), "[zsr] password_file");
    }
    files
}

/// Checks every secret file of `cfg`; the first problem.
pub fn check_all(cfg: &Config) -> Result<(), String> {
    for (path, what) in of(cfg) {
        check(&path, &what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.p12");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check(&p, "the account's signing_pkcs12").unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check(&p, "x").is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check(&p, "x").is_err(), "group-readable is refused too");
        assert!(check(&dir.path().join("missing"), "x").is_ok());
    }
}
