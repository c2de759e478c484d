//! The admin page's own password: only its Argon2id hash (PHC string) is kept, in
//! the file `[admin] password_hash_file` names; `kim-cm admin-password` makes it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// Shortest admin password accepted by `kim-cm admin-password`.
pub const MIN_ADMIN_PASSWORD_CHARS: usize = 12;

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_ADMIN_PASSWORD_CHARS {
        return Err(format!(
            "the admin password must have at least {MIN_ADMIN_PASSWORD_CHARS} characters"
        ));
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A parsed hash, checked once at start so a broken file is found then.
#[derive(Clone)]
pub struct AdminPassword {
    phc: String,
}

impl AdminPassword {
    pub fn parse(text: &str) -> Result<AdminPassword, String> {
        let phc = text.trim().to_string();
        PasswordHash::new(&phc).map_err(|e| {
            format!("not an Argon2 hash ({e}); write one with `kim-cm admin-password`")
        })?;
        Ok(AdminPassword { phc })
    }

    pub fn verify(&self, password: &str) -> bool {
        match PasswordHash::new(&self.phc) {
            Ok(h) => Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        let p = AdminPassword::parse(&format!("{h}\n")).unwrap();
        assert!(p.verify("correct horse battery"));
        assert!(!p.verify("correct horse batterx"));
        assert!(hash("short").is_err());
        assert!(AdminPassword::parse("plain text password").is_err());
    }
}
