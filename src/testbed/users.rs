//! The simulated Fachdienst's accounts: address and password, as a real server keeps
//! them (salted hash, compared in constant time).

use std::collections::HashMap;

use openssl::hash::{hash, MessageDigest};

#[derive(Debug, Clone)]
struct Entry {
    salt: [u8; 16],
    digest: Vec<u8>,
}

/// The accounts of one simulated Fachdienst.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_address: HashMap<String, Entry>,
}

fn digest(salt: &[u8], password: &str) -> Vec<u8> {
    let mut input = salt.to_vec();
    input.extend_from_slice(password.as_bytes());
    hash(MessageDigest::sha256(), &input)
        .map(|d| d.to_vec())
        .unwrap_or_default()
}

impl Users {
    pub fn new() -> Users {
        Users::default()
    }

    pub fn add(&mut self, address: &str, password: &str) {
        let salt: [u8; 16] = rand::random();
        self.by_address.insert(
            address.to_ascii_lowercase(),
            Entry {
                salt,
                digest: digest(&salt, password),
            },
        );
    }

    pub fn exists(&self, address: &str) -> bool {
        self.by_address.contains_key(&address.to_ascii_lowercase())
    }

    /// True when `password` is the password of `address`.
    pub fn check(&self, address: &str, password: &str) -> bool {
        match self.by_address.get(&address.to_ascii_lowercase()) {
            Some(e) => openssl::memcmp::eq(&e.digest, &digest(&e.salt, password)),
            None => false,
        }
    }

    pub fn addresses(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_address.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_passwords() {
        let mut u = Users::new();
        u.add("Alice@x.de", "pw1");
        assert!(u.check("alice@x.de", "pw1"));
        assert!(!u.check("alice@x.de", "pw2"));
        assert!(!u.check("bob@x.de", "pw1"));
        assert!(u.exists("ALICE@x.de"));
    }
}
