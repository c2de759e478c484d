//! KIM versions as the VZD's `komLeData` carries them: `1.0`, `1.5`, and from 1.5
//! on a `+` for a Clientmodul that receives large mails (gemSpec_CM_KOMLE 3.1,
//! A_20189-02). The VZD writes one value per address, `<version>,<address>`.

use std::cmp::Ordering;
use std::fmt;

/// One KIM version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KimVersion {
    pub major: u16,
    pub minor: u16,
    /// `+`: large mails (over 15 MiB, through the KAS) can be received.
    pub large_mails: bool,
}

impl KimVersion {
    /// A_19356-06: an address without `komLeData` has a 1.0 Clientmodul.
    pub const UNDEFINED: KimVersion = KimVersion {
        major: 1,
        minor: 0,
        large_mails: false,
    };
    /// This Clientmodul's version (KIM 1.5, large mails received).
    pub const OWN: KimVersion = KimVersion {
        major: 1,
        minor: 5,
        large_mails: true,
    };

    /// `1.5+`, `1.0`; `None` for anything else.
    pub fn parse(text: &str) -> Option<KimVersion> {
        let t = text.trim();
        let (t, large_mails) = match t.strip_suffix('+') {
            Some(rest) => (rest, true),
            None => (t, false),
        };
        let (major, minor) = t.split_once('.')?;
        let num = |s: &str| -> Option<u16> {
            (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        Some(KimVersion {
            major: num(major)?,
            minor: num(minor)?,
            large_mails,
        })
    }

    /// Compares the version numbers only, not the `+`.
    pub fn cmp_number(&self, other: &KimVersion) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }

    /// The version of `address` among the values of a `komLeData` attribute
    /// (`<version>,<address>`, address compared without case). A value without an
    /// address applies to every address of the entry. `None` when no value names
    /// the address; an unreadable value is skipped.
    pub fn from_kom_le_data<'a>(
        values: impl IntoIterator<Item = &'a str>,
        address: &str,
    ) -> Option<KimVersion> {
        let mut general = None;
        for v in values {
            match v.split_once(',') {
                Some((version, a)) if a.trim().eq_ignore_ascii_case(address.trim()) => {
                    if let Some(k) = KimVersion::parse(version) {
                        return Some(k);
                    }
                }
                Some(_) => {}
                None => general = general.or(KimVersion::parse(v)),
            }
        }
        general
    }
}

impl fmt::Display for KimVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plus = if self.large_mails { "+" } else { "" };
        write!(f, "{}.{}{plus}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_print() {
        for t in ["1.0", "1.5", "1.5+", "2.10+"] {
            assert_eq!(KimVersion::parse(t).unwrap().to_string(), t);
        }
        for bad in [
            "", "1", "1.", ".5", "1.5++", "a.b", "1.5 +", "-1.5", "99999.1",
        ] {
            assert_eq!(KimVersion::parse(bad), None, "{bad:?}");
        }
        let v = |t| KimVersion::parse(t).unwrap();
        assert_eq!(v("1.5").cmp_number(&v("1.5+")), Ordering::Equal);
        assert_eq!(v("1.10").cmp_number(&v("1.5")), Ordering::Greater);
        assert_eq!(v("1.0").cmp_number(&KimVersion::OWN), Ordering::Less);
    }

    #[test]
    fn the_value_for_the_address_is_taken() {
        let values = ["1.0,other@kim.test", "1.5+,Alice@Kim.Test", "garbage"];
        let v = KimVersion::from_kom_le_data(values, "alice@kim.test").unwrap();
        assert_eq!(v.to_string(), "1.5+");
        assert_eq!(KimVersion::from_kom_le_data(values, "bob@kim.test"), None);
        // a bare version applies to the whole entry
        let v = KimVersion::from_kom_le_data(["1.5"], "bob@kim.test").unwrap();
        assert!(!v.large_mails);
        // an unreadable value for the address does not hide a readable one
        let values = ["x.y,bob@kim.test", "1.5+,bob@kim.test"];
        assert!(
            KimVersion::from_kom_le_data(values, "bob@kim.test")
                .unwrap()
                .large_mails
        );
    }
}
