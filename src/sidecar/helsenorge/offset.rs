//! The change feed's offset and its window. The offset is the server's: the
//! client keeps the string it got and sends it back as it is (the API page: "send
//! inn denne som input ved neste kall"). It is read as a time only to tell
//! whether it has fallen out of the window of three months the service keeps;
//! the simulator formats it the documented way, `yyyy-mm-ddThh:mm:ss.00000Z`.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime};

/// The documented form: five fractional digits and `Z`.
const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:5]Z");
/// How many months of changes the service keeps ("Det returneres uansett ikke
/// endringer eldre enn 3 måneder").
pub const WINDOW_MONTHS: u8 = 3;

/// `t` the documented way (to 10 µs, truncated).
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The time an offset names: the documented form, or any RFC 3339 time (the
/// server's format might change; the offset is opaque and this is only for the
/// window warning). None if it is neither.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = PrimitiveDateTime::parse(text, FORMAT) {
        return Some(t.assume_utc());
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// `months` calendar months before `t`, at the last day of the month where that
/// day does not exist (31 May - 3 months = 28/29 February).
pub fn months_before(t: OffsetDateTime, months: u8) -> OffsetDateTime {
    let total = t.year() * 12 + (t.month() as i32 - 1) - months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from((month0 + 1) as u8).unwrap_or(Month::January);
    let last = month.length(year);
    let day = t.day().min(last);
    match Date::from_calendar_date(year, month, day) {
        Ok(d) => t.replace_date(d),
        Err(_) => t - Duration::days(31 * months as i64),
    }
}

/// The oldest change the service still returns at `now`.
pub fn window_start(now: OffsetDateTime) -> OffsetDateTime {
    months_before(now, WINDOW_MONTHS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_documented_form_both_ways() {
        let t = datetime!(2026-12-02 10:00:01.123456789 UTC);
        assert_eq!(format(t), "2026-12-02T10:00:01.12345Z");
        assert_eq!(
            parse("2026-12-02T10:00:01.12345Z"),
            Some(datetime!(2026-12-02 10:00:01.12345 UTC))
        );
        assert_eq!(
            parse("2026-12-02T10:00:01Z"),
            Some(datetime!(2026-12-02 10:00:01 UTC))
        );
        assert_eq!(parse("yesterday"), None);
        // fewer digits: read as RFC 3339; no zone: no time
        assert!(parse("2026-12-02T10:00:01.1234Z").is_some());
        assert_eq!(parse("2026-12-02T10:00:01.12345"), None);
    }

    #[test]
    fn three_calendar_months_back() {
        assert_eq!(
            window_start(datetime!(2026-05-31 12:00 UTC)),
            datetime!(2026-02-28 12:00 UTC)
        );
        assert_eq!(
            window_start(datetime!(2026-02-15 00:00 UTC)),
            datetime!(2025-11-15 00:00 UTC)
        );
        assert_eq!(
            window_start(datetime!(2028-05-31 00:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
    }
}
