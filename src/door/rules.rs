//! Whether a visit opens the door: never for an unknown face, only for allowed galleries
//! and users, not for a masked face unless allowed, not below the door's own minimum
//! similarity, and only inside the time windows (local time by a fixed UTC offset).

use crate::store::VisitRecord;

/// Why a visit does not open the door (shown on the kiosk page and in the visit's record).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown face")]
    Unknown,
    #[error("gallery {0} does not open this door")]
    Gallery(String),
    #[error("user {0} does not open this door")]
    User(String),
    #[error("masked face (allow_masked = false)")]
    Masked,
    #[error("similarity {similarity:.3} below the door's minimum {minimum:.3}")]
    BelowSimilarity { similarity: f32, minimum: f32 },
    #[error("outside the door's time windows")]
    OutsideHours,
}

/// A weekly time window in local minutes: days (bit 0 = Monday) and [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    days: u8,
    start: u16,
    end: u16,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    /// `"HH:MM-HH:MM"`, optionally after days (`"Mon-Fri 07:00-19:00"`,
    /// `"Sat,Sun 09:00-13:00"`); an end before the start runs past midnight.
    pub fn parse(text: &str) -> Result<TimeWindow, String> {
        let bad = || {
            format!(
                "time window {text:?}: expected [DAYS ]HH:MM-HH:MM (e.g. \"Mon-Fri 07:00-19:00\")"
            )
        };
        let text = text.trim();
        let (days, hours) = match text.rsplit_once(' ') {
            Some((d, h)) => (parse_days(d.trim()).ok_or_else(bad)?, h),
            None => (0x7f, text),
        };
        let (start, end) = hours.split_once('-').ok_or_else(bad)?;
        let start = parse_minute(start).ok_or_else(bad)?;
        let end = parse_minute(end).ok_or_else(bad)?;
        if start == end {
            return Err(format!("time window {text:?} is empty"));
        }
        Ok(TimeWindow { days, start, end })
    }

    /// Whether local minute `minute` (0..1440) of weekday `day` (0 = Monday) is inside.
    fn contains(&self, day: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.start < self.end {
            on(day) && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: the evening part belongs to its day, the morning part to the
            // day before.
            (on(day) && minute >= self.start) || (on((day + 6) % 7) && minute < self.end)
        }
    }
}

fn parse_days(text: &str) -> Option<u8> {
    let day = |s: &str| DAYS.iter().position(|d| d.eq_ignore_ascii_case(s.trim()));
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Some(mask)
}

fn parse_minute(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 ends a window at midnight.
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

/// `"+07:00"`, `"-03:30"` or `"Z"` as minutes east of UTC.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let bad = || format!("utc_offset {text:?}: expected +HH:MM or -HH:MM");
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m >= 60 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// The door's rules, from `[door]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// (client, gallery) pairs whose users open the door.
    pub galleries: Vec<(String, String)>,
    /// Allowed user ids; empty: every user of those galleries.
    pub users: Vec<String>,
    pub min_similarity: f32,
    pub allow_masked: bool,
    /// Empty: always.
    pub windows: Vec<TimeWindow>,
    /// Minutes east of UTC of the windows' local time.
    pub utc_offset_min: i32,
}

impl Rules {
    /// Whether `visit` opens the door; the first rule it breaks otherwise, checked from
    /// who it is to when it is.
    pub fn decide(&self, visit: &VisitRecord) -> Result<(), Refusal> {
        let Some(user_id) = &visit.user_id else {
            return Err(Refusal::Unknown);
        };
        if !self
            .galleries
            .iter()
            .any(|(c, g)| *c == visit.client && *g == visit.gallery)
        {
            return Err(Refusal::Gallery(format!(
                "{}/{}",
                visit.client, visit.gallery
            )));
        }
        if !self.users.is_empty() && !self.users.iter().any(|u| u == user_id) {
            return Err(Refusal::User(user_id.clone()));
        }
        if visit.mask && !self.allow_masked {
            return Err(Refusal::Masked);
        }
        if visit.similarity < self.min_similarity {
            return Err(Refusal::BelowSimilarity {
                similarity: visit.similarity,
                minimum: self.min_similarity,
            });
        }
        if !self.windows.is_empty() {
            let (day, minute) = local_day_minute(visit.timestamp_ms, self.utc_offset_min);
            if !self.windows.iter().any(|w| w.contains(day, minute)) {
                return Err(Refusal::OutsideHours);
            }
        }
        Ok(())
    }
}

/// Weekday (0 = Monday) and minute of the day of `ms` at `offset_min` east of UTC.
fn local_day_minute(ms: u64, offset_min: i32) -> (u8, u16) {
    let local = (ms / 1000) as i64 + i64::from(offset_min) * 60;
    let days = local.div_euclid(86_400);
    let minute = (local.rem_euclid(86_400) / 60) as u16;
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    (((days + 3).rem_euclid(7)) as u8, minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wednesday 2026-11-25 20:06:20 UTC.
    const WED_2006_UTC: u64 = 1_795_637_180_000;

    fn visit(user: Option<&str>) -> VisitRecord {
        VisitRecord {
            client: "kiosk".into(),
            gallery: "door".into(),
            device_id: "door-1".into(),
            user_id: user.map(str::to_string),
            user_name: user.map(str::to_string),
            similarity: 0.9,
            mask: false,
            timestamp_ms: WED_2006_UTC,
            face_jpeg: Vec::new(),
        }
    }

    fn rules() -> Rules {
        Rules {
            galleries: vec![("kiosk".into(), "door".into())],
            users: Vec::new(),
            min_similarity: 0.8,
            allow_masked: false,
            windows: Vec::new(),
            utc_offset_min: 0,
        }
    }

    #[test]
    fn any_known_user_of_the_gallery_opens_by_default() {
        assert_eq!(rules().decide(&visit(Some("amy"))), Ok(()));
    }

    #[test]
    fn every_rule_refuses_with_its_reason() {
        let r = rules();
        assert_eq!(r.decide(&visit(None)), Err(Refusal::Unknown));
        let other = VisitRecord {
            gallery: "lobby".into(),
            ..visit(Some("amy"))
        };
        assert_eq!(
            r.decide(&other),
            Err(Refusal::Gallery("kiosk/lobby".into()))
        );
        let only_amy = Rules {
            users: vec!["amy".into()],
            ..rules()
        };
        assert_eq!(
            only_amy.decide(&visit(Some("sheldon"))),
            Err(Refusal::User("sheldon".into()))
        );
        let masked = VisitRecord {
            mask: true,
            ..visit(Some("amy"))
        };
        assert_eq!(r.decide(&masked), Err(Refusal::Masked));
        let allow_masked = Rules {
            allow_masked: true,
            ..rules()
        };
        assert_eq!(allow_masked.decide(&masked), Ok(()));
        let weak = VisitRecord {
            similarity: 0.79,
            ..visit(Some("amy"))
        };
        assert!(matches!(
            r.decide(&weak),
            Err(Refusal::BelowSimilarity { .. })
        ));
        // An unknown face is refused as unknown even when everything else would refuse.
        let unknown_masked = VisitRecord {
            mask: true,
            similarity: 0.1,
            ..visit(None)
        };
        assert_eq!(r.decide(&unknown_masked), Err(Refusal::Unknown));
    }

    #[test]
    fn time_windows_use_local_days_and_may_run_past_midnight() {
        let at = |windows: &[&str], offset: &str| {
            Rules {
                windows: windows
                    .iter()
                    .map(|w| TimeWindow::parse(w).unwrap())
                    .collect(),
                utc_offset_min: parse_utc_offset(offset).unwrap(),
                ..rules()
            }
            .decide(&visit(Some("amy")))
        };
        // 20:06 UTC on a Wednesday.
        assert_eq!(at(&["Mon-Fri 07:00-21:00"], "+00:00"), Ok(()));
        assert_eq!(
            at(&["Mon-Fri 07:00-20:00"], "+00:00"),
            Err(Refusal::OutsideHours)
        );
        // At +07:00 it is Thursday 03:06.
        assert_eq!(
            at(&["Mon-Fri 07:00-21:00"], "+07:00"),
            Err(Refusal::OutsideHours)
        );
        assert_eq!(at(&["Wed 22:00-06:00"], "+07:00"), Ok(()));
        assert_eq!(
            at(&["Thu 22:00-06:00"], "+07:00"),
            Err(Refusal::OutsideHours)
        );
        assert_eq!(
            at(&["Sat,Sun 00:00-24:00", "20:00-20:30"], "+00:00"),
            Ok(())
        );
        assert_eq!(
            at(&["Fri-Tue 00:00-24:00"], "+00:00"),
            Err(Refusal::OutsideHours)
        );
        assert_eq!(at(&["Fri-Wed 00:00-24:00"], "+00:00"), Ok(()));
    }

    #[test]
    fn malformed_windows_and_offsets_are_refused() {
        for bad in [
            "",
            "7-19",
            "Mon-Fri",
            "Xyz 07:00-19:00",
            "07:00-07:00",
            "25:00-26:00",
        ] {
            assert!(TimeWindow::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["7", "+7", "07:00", "+15:00", "+07:60"] {
            assert!(parse_utc_offset(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_utc_offset("-03:30"), Ok(-210));
        assert_eq!(parse_utc_offset("Z"), Ok(0));
    }
}
