//! Norwegian national identity numbers (fødselsnummer and its relatives), checked
//! before a local patient is trusted to be one: 11 digits `DDMMYY III K1 K2`
//! with two mod-11 check digits (Skatteetaten; FHIDev/Fhi.NINCheck was read for
//! the kinds).
//!
//! Kinds: fødselsnummer; D-number (day + 40); H-number (month + 40, internal to
//! a health institution); FH-number (first digit 8 or 9, no date). Synthetic
//! test numbers of the test environments add 80 (Tenor) or 65 (NHN SyntPop) to
//! the month; they are accepted only when asked for, never in production.
//!
//! From 2032 new numbers are gender neutral and K1 may leave a remainder of 0,
//! 1, 2 or 3 where today only 0 is allowed; both rules are valid side by side,
//! so [`Rules::rule_2032`] is on by default. K2 is unchanged.

use time::{Date, Month};

/// Weights of the first check digit over digits 1-9.
const K1_WEIGHTS: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
/// Weights of the second check digit over digits 1-10 (K1 included).
const K2_WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
/// Remainders of the K1 sum (K1 with weight 1) accepted under the 2032 rule.
const K1_REMAINDERS_2032: [u32; 4] = [0, 1, 2, 3];
/// Added to the day of a D-number.
const D_NUMBER_DAY: u32 = 40;
/// Added to the month of an H-number.
const H_NUMBER_MONTH: u32 = 40;
/// Added to the month of a Tenor test number.
const TENOR_MONTH: u32 = 80;
/// Added to the month of an NHN SyntPop test number.
const SYNTPOP_MONTH: u32 = 65;

/// Which number it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fodselsnummer,
    DNumber,
    HNumber,
    FhNumber,
}

/// Which test data generator made a synthetic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synthetic {
    Tenor,
    SyntPop,
}

/// A number that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nin {
    pub kind: Kind,
    pub synthetic: Option<Synthetic>,
    /// None for FH-numbers, which carry no date.
    pub birth_date: Option<Date>,
}

/// What is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Synthetic test numbers (Tenor, SyntPop): test environments only.
    pub synthetic: bool,
    /// K1 remainders 0-3 (numbers issued from 2032).
    pub rule_2032: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            synthetic: false,
            rule_2032: true,
        }
    }
}

/// Why a number was refused; says it in words a user can check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NinError {
    #[error("it has {0} characters, an identity number has 11 digits")]
    Length(usize),
    #[error("it contains something other than digits")]
    NotDigits,
    #[error("the first check digit (the 10th digit) is wrong")]
    CheckDigit1,
    #[error("the second check digit (the 11th digit) is wrong")]
    CheckDigit2,
    #[error("the first six digits are not a date (DDMMYY), nor a D- or H-number's")]
    Date,
    #[error(
        "it is a synthetic test number ({0}), accepted only with --synthetic or `synthetic = true`"
    )]
    SyntheticRefused(&'static str),
}

fn digits(text: &str) -> Result<[u32; 11], NinError> {
    if text.chars().count() != 11 {
        return Err(NinError::Length(text.chars().count()));
    }
    let mut d = [0u32; 11];
    for (i, c) in text.chars().enumerate() {
        d[i] = c.to_digit(10).ok_or(NinError::NotDigits)?;
    }
    Ok(d)
}

fn weighted(weights: &[u32], d: &[u32]) -> u32 {
    weights.iter().zip(d).map(|(w, x)| w * x).sum()
}

/// Checks both check digits of 11 digits.
fn check_digits(d: &[u32; 11], rule_2032: bool) -> Result<(), NinError> {
    let r1 = (weighted(&K1_WEIGHTS, &d[..9]) + d[9]) % 11;
    let k1_ok = r1 == 0 || rule_2032 && K1_REMAINDERS_2032.contains(&r1);
    if !k1_ok {
        return Err(NinError::CheckDigit1);
    }
    // a K2 of "10" has no digit: no digit makes the sum divisible, so it fails here
    if (weighted(&K2_WEIGHTS, &d[..10]) + d[10]) % 11 != 0 {
        return Err(NinError::CheckDigit2);
    }
    Ok(())
}

/// The full year of `yy` by the individual number (Skatteetaten's ranges); None
/// where the ranges give no century.
fn year(yy: i32, individual: u32) -> Option<i32> {
    match individual {
        0..=499 => Some(1900 + yy),
        500..=749 if yy > 54 => Some(1800 + yy),
        500..=999 if yy < 40 => Some(2000 + yy),
        900..=999 if yy >= 40 => Some(1900 + yy),
        _ => None,
    }
}

fn date(year: i32, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()
}

/// Checks `text` as an identity number under `rules`.
pub fn validate(text: &str, rules: Rules) -> Result<Nin, NinError> {
    let d = digits(text)?;
    check_digits(&d, rules.rule_2032)?;
    if d[0] >= 8 {
        // FH-number: 800000000-999999999 before the check digits, no date
        return Ok(Nin {
            kind: Kind::FhNumber,
            synthetic: None,
            birth_date: None,
        });
    }
    let mut day = d[0] * 10 + d[1];
    let mut month = d[2] * 10 + d[3];
    let yy = (d[4] * 10 + d[5]) as i32;
    let individual = d[6] * 100 + d[7] * 10 + d[8];
    let mut kind = Kind::Fodselsnummer;
    if day > D_NUMBER_DAY {
        day -= D_NUMBER_DAY;
        kind = Kind::DNumber;
    }
    let mut synthetic = None;
    if month > TENOR_MONTH {
        month -= TENOR_MONTH;
        synthetic = Some(Synthetic::Tenor);
    } else if month > SYNTPOP_MONTH {
        month -= SYNTPOP_MONTH;
        synthetic = Some(Synthetic::SyntPop);
    } else if month > H_NUMBER_MONTH {
        if kind == Kind::DNumber {
            return Err(NinError::Date);
        }
        month -= H_NUMBER_MONTH;
        kind = Kind::HNumber;
    }
    // Numbers from 2032 may not follow the century ranges; under that rule a
    // date that exists in some century is enough.
    let birth_date = match year(yy, individual) {
        Some(y) => date(y, month, day),
        None if rules.rule_2032 => date(2000 + yy, month, day).or(date(1900 + yy, month, day)),
        None => None,
    }
    .ok_or(NinError::Date)?;
    if let Some(s) = synthetic {
        if !rules.synthetic {
            return Err(NinError::SyntheticRefused(match s {
                Synthetic::Tenor => "Tenor, month + 80",
                Synthetic::SyntPop => "SyntPop, month + 65",
            }));
        }
    }
    Ok(Nin {
        kind,
        synthetic,
        birth_date: Some(birth_date),
    })
}

/// The 11-digit number whose first nine digits are `first9`, with the check
/// digits of today's rule (remainder 0); None where K1 or K2 would be 10. For
/// the simulator and tests.
pub fn complete(first9: &str) -> Option<String> {
    complete_with_remainder(first9, 0)
}

/// Like [`complete`] with K1 chosen so that its sum leaves `remainder` (1-3:
/// numbers of the 2032 rule).
pub fn complete_with_remainder(first9: &str, remainder: u32) -> Option<String> {
    let d: Vec<u32> = first9
        .chars()
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if d.len() != 9 {
        return None;
    }
    let s1 = weighted(&K1_WEIGHTS, &d) % 11;
    let k1 = (remainder + 11 - s1) % 11;
    if k1 > 9 {
        return None;
    }
    let mut d10 = d.clone();
    d10.push(k1);
    let k2 = (11 - weighted(&K2_WEIGHTS, &d10) % 11) % 11;
    if k2 > 9 {
        return None;
    }
    Some(format!("{first9}{k1}{k2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Rules = Rules {
        synthetic: false,
        rule_2032: false,
    };
    const TEST_ENV: Rules = Rules {
        synthetic: true,
        rule_2032: true,
    };

    /// The first individual numbers from `start` whose check digits exist.
    fn some(prefix6: &str, start: u32, rem: u32) -> String {
        (start..start + 100)
            .find_map(|i| complete_with_remainder(&format!("{prefix6}{i:03}"), rem))
            .unwrap()
    }

    #[test]
    fn the_published_example_passes() {
        let n = validate("31129956715", Rules::default()).unwrap();
        assert_eq!(n.kind, Kind::Fodselsnummer);
        // 567 with year 99: born 1899
        assert_eq!(n.birth_date, date(1899, 12, 31));
        assert_eq!(validate("31129956715", STRICT).unwrap(), n);
        assert_eq!(complete("311299567").as_deref(), Some("31129956715"));
    }

    #[test]
    fn fodselsnummer_and_its_centuries() {
        for (prefix, ind, year) in [
            ("010180", 0, 1980),
            ("290200", 500, 2000),
            ("150545", 900, 1945),
            ("150575", 600, 1875),
        ] {
            let n = some(prefix, ind, 0);
            let v = validate(&n, STRICT).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(v.kind, Kind::Fodselsnummer);
            assert_eq!(v.birth_date.unwrap().year(), year, "{n}");
        }
        // 29 February 1900 did not exist (individual number < 500: 1900)
        assert_eq!(validate(&some("290200", 0, 0), STRICT), Err(NinError::Date));
        assert_eq!(validate(&some("320180", 0, 0), STRICT), Err(NinError::Date));
        assert_eq!(validate(&some("011380", 0, 0), STRICT), Err(NinError::Date));
    }

    #[test]
    fn d_h_and_fh_numbers() {
        let d = validate(&some("410180", 0, 0), STRICT).unwrap();
        assert_eq!((d.kind, d.birth_date), (Kind::DNumber, date(1980, 1, 1)));
        let h = validate(&some("014180", 0, 0), STRICT).unwrap();
        assert_eq!((h.kind, h.birth_date), (Kind::HNumber, date(1980, 1, 1)));
        let fh = validate(&some("812345", 0, 0), STRICT).unwrap();
        assert_eq!((fh.kind, fh.birth_date), (Kind::FhNumber, None));
        assert_eq!(
            validate(&some("999999", 0, 0), STRICT).unwrap().kind,
            Kind::FhNumber
        );
        // a D-number's day 72 is no date
        assert_eq!(validate(&some("720180", 0, 0), STRICT), Err(NinError::Date));
    }

    #[test]
    fn wrong_check_digits_length_and_characters() {
        assert_eq!(validate("31129956716", STRICT), Err(NinError::CheckDigit2));
        assert_eq!(validate("31129956705", STRICT), Err(NinError::CheckDigit1));
        assert_eq!(validate("3112995671", STRICT), Err(NinError::Length(10)));
        assert_eq!(validate("311299567150", STRICT), Err(NinError::Length(12)));
        assert_eq!(validate("3112995671a", STRICT), Err(NinError::NotDigits));
        assert_eq!(validate("", STRICT), Err(NinError::Length(0)));
    }

    #[test]
    fn synthetic_numbers_only_when_asked_for() {
        let tenor = some("018180", 0, 0); // month 1 + 80
        let syntpop = some("016680", 0, 0); // month 1 + 65
        let tenor_d = some("418180", 0, 0);
        for n in [&tenor, &syntpop, &tenor_d] {
            assert!(
                matches!(
                    validate(n, Rules::default()),
                    Err(NinError::SyntheticRefused(_))
                ),
                "{n}"
            );
        }
        let t = validate(&tenor, TEST_ENV).unwrap();
        assert_eq!(
            (t.kind, t.synthetic),
            (Kind::Fodselsnummer, Some(Synthetic::Tenor))
        );
        assert_eq!(t.birth_date, date(1980, 1, 1));
        let s = validate(&syntpop, TEST_ENV).unwrap();
        assert_eq!(s.synthetic, Some(Synthetic::SyntPop));
        let td = validate(&tenor_d, TEST_ENV).unwrap();
        assert_eq!(
            (td.kind, td.synthetic),
            (Kind::DNumber, Some(Synthetic::Tenor))
        );
        // a synthetic number with a wrong check digit is still wrong
        let mut bad = tenor.clone().into_bytes();
        bad[10] = b'0' + (bad[10] - b'0' + 1) % 10;
        assert!(validate(std::str::from_utf8(&bad).unwrap(), TEST_ENV).is_err());
    }

    #[test]
    fn the_2032_rule_accepts_k1_remainders_up_to_three() {
        for rem in 1..=3 {
            let n = some("010132", 500, rem);
            assert_eq!(validate(&n, STRICT), Err(NinError::CheckDigit1), "{n}");
            let v = validate(&n, Rules::default()).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(v.birth_date, date(2032, 1, 1));
        }
        // remainder 4 is wrong under both rules
        let n = some("010132", 500, 4);
        assert_eq!(validate(&n, Rules::default()), Err(NinError::CheckDigit1));
        // K2 is unchanged under the 2032 rule
        let mut bad = some("010132", 500, 2).into_bytes();
        bad[10] = b'0' + (bad[10] - b'0' + 3) % 10;
        assert_eq!(
            validate(std::str::from_utf8(&bad).unwrap(), Rules::default()),
            Err(NinError::CheckDigit2)
        );
        // an individual number outside the century ranges (500-749 with year 40-54)
        let n = some("010145", 600, 0);
        assert_eq!(validate(&n, STRICT), Err(NinError::Date));
        assert!(validate(&n, Rules::default()).is_ok());
    }
}
