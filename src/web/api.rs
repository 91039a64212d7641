//! The routes: the page and its two assets, `/api/state` and `/api/history`. Everything else is
//! `404`; nothing is read from disk.

use super::history::{FIELDS, SAMPLES, SAMPLE_EVERY_S};
use super::http::{Request, Response};
use super::{Board, Entry};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The routes over one board.
#[derive(Debug, Clone)]
pub struct Routes {
    board: Board,
    poll_interval: Duration,
    stale_after: Duration,
}

impl Routes {
    /// Routes over `board`; the page refreshes every `poll_interval`.
    pub fn new(board: Board, poll_interval: Duration, stale_after: Duration) -> Self {
        Self { board, poll_interval, stale_after }
    }

    /// The response to `request` (GET; HEAD sends the same head).
    pub fn answer(&self, request: &Request) -> Response {
        match request.path.as_str() {
            "/" | "/index.html" => Response::new(200, "text/html; charset=utf-8", INDEX_HTML),
            "/app.js" => Response::new(200, "text/javascript; charset=utf-8", APP_JS),
            "/app.css" => Response::new(200, "text/css; charset=utf-8", APP_CSS),
            "/api/state" => Response::new(200, "application/json", self.state(unix_now()).to_string()),
            "/api/history" => match hours(&request.query) {
                Ok(hours) => {
                    Response::new(200, "text/csv; charset=utf-8", self.history_csv(unix_now(), hours))
                }
                Err(why) => Response::error(400, &why),
            },
            _ => Response::error(404, "no such page (there are /, /api/state and /api/history?hours=N)"),
        }
    }

    /// `/api/state`: every battery and bank, `state` being the MQTT output's document.
    pub fn state(&self, unix_now: f64) -> Value {
        let now = Instant::now();
        let entries = self.board.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let batteries: Vec<Value> = entries.iter().map(|e| self.entry_json(e, now)).collect();
        json!({
            "bms_bridge": env!("CARGO_PKG_VERSION"),
            "now": unix_now,
            "poll_interval_ms": u64::try_from(self.poll_interval.as_millis()).unwrap_or(u64::MAX),
            "stale_after_s": self.stale_after.as_secs_f64(),
            "batteries": batteries,
        })
    }

    fn entry_json(&self, e: &Entry, now: Instant) -> Value {
        let age = now.saturating_duration_since(e.updated);
        let x = &e.extra;
        let packs: Vec<Value> = x
            .packs
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "member": p.member, "current": p.current_a,
                    "charge_rating": p.charge_rating_a, "discharge_rating": p.discharge_rating_a,
                })
            })
            .collect();
        json!({
            "id": e.id,
            "name": e.name,
            "kind": x.kind,
            "connection": e.connection,
            "age_s": age.as_secs_f64(),
            // The task stopped offering states: whatever the document says, it is not live.
            "stale": age > self.stale_after.max(self.poll_interval * 3),
            "state": e.state_json(),
            "control": e.control_json(),
            "link": x.link.as_ref().map(|l| json!({
                "last_good_age_s": l.last_good_age_s,
                "errors_last_hour": l.errors_last_hour,
                "last_error": l.last_error,
            })),
            "cell_window": x.cell_window_v.map(|(min, max)| json!({ "min_v": min, "max_v": max })),
            "packs": packs,
        })
    }

    /// `/api/history`: one row per battery and minute of the last `hours`, oldest first; an
    /// unknown value is an empty field.
    pub fn history_csv(&self, unix_now: f64, hours: u32) -> String {
        let since = (unix_now as u32).saturating_sub(hours.saturating_mul(3600));
        let mut out = format!("unix_time,utc,battery,{}\n", FIELDS.join(","));
        // Copied out under the lock (at most 3.3 MB of plain samples), formatted after it: a
        // battery task offering its state never waits for the text formatting.
        let copied: Vec<(String, Vec<super::history::Sample>)> = {
            let entries = self.board.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.iter().map(|e| (csv_field(&e.id), e.history.since(since).copied().collect())).collect()
        };
        for (id, samples) in &copied {
            for s in samples {
                let _ = write!(out, "{},{},{id}", s.unix_s, utc(s.unix_s));
                for v in s.values {
                    out.push(',');
                    if v.is_finite() {
                        let _ = write!(out, "{v}");
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

const _: () = assert!(SAMPLES as u32 * SAMPLE_EVERY_S == 24 * 3600, "the ring holds 24 h");

/// `hours=N` of a query: 1 to 24, 24 when absent.
fn hours(query: &str) -> Result<u32, String> {
    let mut hours = 24;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("hours", n)) => {
                hours = n
                    .parse::<u32>()
                    .ok()
                    .filter(|h| (1..=24).contains(h))
                    .ok_or_else(|| "hours must be a whole number from 1 to 24".to_owned())?;
            }
            _ => return Err(format!("unknown parameter {pair:?} (only hours=N)")),
        }
    }
    Ok(hours)
}

/// A CSV field: quoted when it needs to be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `2026-12-03T16:49:00Z` of Unix seconds (the civil-from-days algorithm, proleptic Gregorian).
pub fn utc(unix_s: u32) -> String {
    let days = i64::from(unix_s / 86_400);
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_matches_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_316_549), "2026-12-03T16:49:09Z");
        assert_eq!(utc(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn hours_are_1_to_24() {
        assert_eq!(hours(""), Ok(24));
        assert_eq!(hours("hours=3"), Ok(3));
        assert!(hours("hours=0").is_err());
        assert!(hours("hours=25").is_err());
        assert!(hours("hours=x").is_err());
        assert!(hours("file=/etc/passwd").is_err());
    }

    #[test]
    fn unknown_paths_are_404_and_assets_have_their_types() {
        let routes = Routes::new(Board::default(), Duration::from_secs(1), Duration::from_secs(10));
        let get = |path: &str| routes.answer(&Request { path: path.into(), query: String::new() });
        assert_eq!(get("/../../etc/passwd").status, 404);
        assert_eq!(get("/src/web/api.rs").status, 404);
        assert_eq!(get("/").content_type, "text/html; charset=utf-8");
        assert_eq!(get("/app.js").content_type, "text/javascript; charset=utf-8");
        assert_eq!(get("/api/state").content_type, "application/json");
        assert_eq!(get("/api/history").body, b"unix_time,utc,battery,voltage_v,current_a,soc_percent,cell_min_v,cell_max_v,cvl_v,ccl_a,dcl_a\n");
    }
}
