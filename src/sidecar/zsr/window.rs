//! The batch window (SASIS: batch traffic only from 22:00 to 04:00), in a named
//! time zone (Europe/Zurich by default; the FAQ does not name one, Swiss time is
//! meant), daylight saving included.

use time::OffsetDateTime;

/// `HH:MM-HH:MM` in a time zone; the end may be on the next day.
#[derive(Debug, Clone)]
pub struct Window {
    start: (i8, i8),
    end: (i8, i8),
    tz: jiff::tz::TimeZone,
    pub text: String,
}

fn hh_mm(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

fn zoned(now: OffsetDateTime, tz: &jiff::tz::TimeZone) -> jiff::Zoned {
    jiff::Timestamp::from_second(now.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
}

impl Window {
    pub fn parse(window: &str, timezone: &str) -> Result<Window, String> {
        let bad =
            || format!("[zsr] batch_window {window:?}: write it as HH:MM-HH:MM, e.g. 22:00-04:00");
        let (a, b) = window.split_once('-').ok_or_else(bad)?;
        let (start, end) = (hh_mm(a).ok_or_else(bad)?, hh_mm(b).ok_or_else(bad)?);
        if start == end {
            return Err(bad());
        }
        let tz = jiff::tz::TimeZone::get(timezone)
            .map_err(|e| format!("[zsr] timezone {timezone:?} is not a known time zone: {e}"))?;
        Ok(Window {
            start,
            end,
            tz,
            text: format!("{window} {timezone}"),
        })
    }

    fn minutes(t: (i8, i8)) -> i32 {
        i32::from(t.0) * 60 + i32::from(t.1)
    }

    /// Whether `now` is in the window.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        let z = zoned(now, &self.tz);
        let m = i32::from(z.hour()) * 60 + i32::from(z.minute());
        let (s, e) = (Self::minutes(self.start), Self::minutes(self.end));
        if s < e {
            (s..e).contains(&m)
        } else {
            m >= s || m < e
        }
    }

    /// When the window next opens after `now` (`now` itself when open).
    pub fn next_opening(&self, now: OffsetDateTime) -> OffsetDateTime {
        if self.contains(now) {
            return now;
        }
        let z = zoned(now, &self.tz);
        let mut day = z.date();
        for _ in 0..3 {
            let at = day
                .at(self.start.0, self.start.1, 0, 0)
                .to_zoned(self.tz.clone())
                .map(|z| z.timestamp().as_second());
            if let Ok(secs) = at {
                if secs > now.unix_timestamp() {
                    return OffsetDateTime::from_unix_timestamp(secs).unwrap_or(now);
                }
            }
            day = day.tomorrow().unwrap_or(day);
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_window_is_swiss_local_time_across_midnight_and_daylight_saving() {
        let w = Window::parse("22:00-04:00", "Europe/Zurich").unwrap();
        // winter: UTC+1
        assert!(
            w.contains(datetime!(2026-12-02 21:00 UTC)),
            "22:00 in Zurich"
        );
        assert!(!w.contains(datetime!(2026-12-02 20:59 UTC)));
        assert!(
            w.contains(datetime!(2026-12-03 02:59 UTC)),
            "03:59 in Zurich"
        );
        assert!(
            !w.contains(datetime!(2026-12-03 03:00 UTC)),
            "04:00 in Zurich"
        );
        // summer: UTC+2
        assert!(w.contains(datetime!(2026-07-01 20:00 UTC)));
        assert!(!w.contains(datetime!(2026-07-01 19:59 UTC)));
        assert_eq!(
            w.next_opening(datetime!(2026-12-02 10:00 UTC)),
            datetime!(2026-12-02 21:00 UTC)
        );
        assert_eq!(
            w.next_opening(datetime!(2026-12-02 23:00 UTC)),
            datetime!(2026-12-02 23:00 UTC),
            "open now"
        );
        assert_eq!(
            w.next_opening(datetime!(2026-12-03 05:00 UTC)),
            datetime!(2026-12-03 21:00 UTC)
        );
        assert!(Window::parse("22-04", "Europe/Zurich").is_err());
        assert!(Window::parse("22:00-04:00", "Mars/Olympus").is_err());
    }
}
