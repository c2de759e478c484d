//! ZSR and K numbers (SASIS ZSR-Webservice FAQ): checked before anything is sent,
//! so that one malformed number cannot turn a request of 500 into a 400.
//!
//! A ZSR number is a check letter and six digits (`L248519`): each digit is
//! multiplied by its position counted from the right (the last digit by 1), the
//! products are added, and the sum modulo 26 is the check letter's place in the
//! alphabet (A = 1). The FAQ does not say which letter belongs to a remainder of
//! 0 (one digit string in 26); kim-cm reads 0 as 26, i.e. `Z`, the letter whose
//! place is congruent to 0 modulo 26, and says so whenever it does
//! ([`Validity::ValidRemainderZero`]); `[zsr] remainder_zero = "refuse"` refuses
//! such numbers instead. A K number is six digits and `K` (`123456K`); it has no
//! check digit. Input may be lower case and written with spaces or dots
//! (`L2485.19`).

use serde::{Deserialize, Serialize};

/// Which register a number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A ZSR number (clearing number): details from `/clearingnumbers`.
    Zsr,
    /// A K number (employee number): details from `/employeenumbers`.
    K,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zsr => "zsr",
            Kind::K => "k",
        }
    }
}

/// What to do with a ZSR number whose digit sum is divisible by 26.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemainderZero {
    /// Accept `Z` as its check letter (and say it is kim-cm's reading).
    #[default]
    Z,
    /// Refuse it.
    Refuse,
}

/// A number checked and written the way the service writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    pub text: String,
    pub kind: Kind,
    /// A ZSR number whose check letter rests on kim-cm's reading of remainder 0.
    pub remainder_zero: bool,
}

/// Why a text is not a ZSR or K number, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} is neither a ZSR number (a letter and 6 digits, e.g. L248519) nor a K number (6 digits and K, e.g. 123456K)")]
    Format(String),
    #[error("{number} has the check letter {given}, but its digits give {expected}: check the number for a typing error")]
    CheckLetter {
        number: String,
        given: char,
        expected: char,
    },
    #[error("{0}: its digit sum is divisible by 26, for which the SASIS rule names no check letter, and [zsr] remainder_zero = \"refuse\"")]
    RemainderZero(String),
}

/// The check letter of six digits, and whether it rests on remainder 0.
pub fn check_letter(digits: &[u8; 6]) -> (char, bool) {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * (i as u32 + 1))
        .sum();
    match sum % 26 {
        0 => ('Z', true),
        r => ((b'A' + r as u8 - 1) as char, false),
    }
}

/// Checks `input` and writes it as the service does (upper case, no spaces or
/// dots).
pub fn parse(input: &str, policy: RemainderZero) -> Result<Number, NumberError> {
    let text: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let b = text.as_bytes();
    let format = || NumberError::Format(input.to_string());
    if b.len() != 7 {
        return Err(format());
    }
    if b[6] == b'K' && b[..6].iter().all(u8::is_ascii_digit) {
        return Ok(Number {
            text,
            kind: Kind::K,
            remainder_zero: false,
        });
    }
    if !b[0].is_ascii_uppercase() || !b[1..].iter().all(u8::is_ascii_digit) {
        return Err(format());
    }
    let mut digits = [0u8; 6];
    for (d, c) in digits.iter_mut().zip(&b[1..]) {
        *d = c - b'0';
    }
    let (expected, zero) = check_letter(&digits);
    if zero && policy == RemainderZero::Refuse {
        return Err(NumberError::RemainderZero(text));
    }
    if b[0] as char != expected {
        return Err(NumberError::CheckLetter {
            given: b[0] as char,
            number: text,
            expected,
        });
    }
    Ok(Number {
        text,
        kind: Kind::Zsr,
        remainder_zero: zero,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_examples_of_the_seed_pass() {
        for n in ["L248519", "Y274589"] {
            let p = parse(n, RemainderZero::Z).unwrap();
            assert_eq!(p.kind, Kind::Zsr);
            assert!(!p.remainder_zero);
        }
        assert_eq!(check_letter(&[2, 4, 8, 5, 1, 9]), ('L', false));
        assert_eq!(check_letter(&[2, 7, 4, 5, 8, 9]), ('Y', false));
    }

    #[test]
    fn spellings_are_normalised_and_typing_errors_refused() {
        assert_eq!(
            parse(" l2485.19 ", RemainderZero::Z).unwrap().text,
            "L248519"
        );
        assert_eq!(
            parse("L248518", RemainderZero::Z),
            Err(NumberError::CheckLetter {
                number: "L248518".into(),
                given: 'L',
                expected: 'K'
            })
        );
        for bad in [
            "", "L24851", "L2485199", "1248519", "LL48519", "12345K", "A12345K",
        ] {
            assert!(
                matches!(parse(bad, RemainderZero::Z), Err(NumberError::Format(_))),
                "{bad}"
            );
        }
        let k = parse("123456k", RemainderZero::Z).unwrap();
        assert_eq!((k.text.as_str(), k.kind), ("123456K", Kind::K));
    }

    #[test]
    fn remainder_zero_is_z_or_refused_by_policy() {
        assert_eq!(check_letter(&[0; 6]), ('Z', true));
        // 4*6 + 1*2 = 26
        assert_eq!(check_letter(&[4, 0, 0, 0, 1, 0]), ('Z', true));
        let z = parse("Z400010", RemainderZero::Z).unwrap();
        assert!(z.remainder_zero);
        assert_eq!(
            parse("Z400010", RemainderZero::Refuse),
            Err(NumberError::RemainderZero("Z400010".into()))
        );
        // every letter A..Y appears for some digits, Z only for remainder 0
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..100_000u32 {
            let s = format!("{n:06}");
            let mut d = [0u8; 6];
            for (x, c) in d.iter_mut().zip(s.bytes()) {
                *x = c - b'0';
            }
            let (l, zero) = check_letter(&d);
            assert_eq!(l == 'Z', zero);
            seen.insert(l);
        }
        assert_eq!(seen.len(), 26);
    }
}
