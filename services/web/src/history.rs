//! The call history page: the ended calls the SIP agent keeps (the last
//! 1000), newest first, 50 a page, filtered by direction, by answered or
//! not, and by the remote party (any part of it). Every user sees it.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use doorphone_interfaces::sip::HistoryEntry;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, render, session};

/// Calls on one page.
pub const PER_PAGE: usize = 50;

pub fn router() -> Router<App> {
    Router::new().route("/history", get(show))
}

/// The filter: `direction` (`in`, `out` or empty for both), `answered`
/// (`yes`, `no` or empty), `q` (part of the remote party) and the page.
pub struct Filter {
    pub direction: String,
    pub answered: String,
    pub q: String,
    pub page: usize,
}

impl Filter {
    fn of(pairs: &[(String, String)]) -> Filter {
        let field = |name| form::one(pairs, name).unwrap_or_default().trim().to_owned();
        Filter {
            direction: field("direction"),
            answered: field("answered"),
            q: field("q"),
            page: field("page").parse().unwrap_or(1).max(1),
        }
    }

    fn matches(&self, e: &HistoryEntry) -> bool {
        (self.direction.is_empty() || e.direction == self.direction)
            && match self.answered.as_str() {
                "yes" => e.answered != 0,
                "no" => e.answered == 0,
                _ => true,
            }
            && e.remote.to_lowercase().contains(&self.q.to_lowercase())
    }

    /// The link to page `page` of this filter.
    pub fn link(&self, page: usize) -> String {
        let query = serde_urlencoded::to_string([
            ("direction", self.direction.as_str()),
            ("answered", self.answered.as_str()),
            ("q", self.q.as_str()),
        ])
        .unwrap_or_default();
        format!("/history?{query}&page={page}")
    }
}

/// One call as the page lists it.
pub struct Line {
    pub start: String,
    pub direction: String,
    pub remote: String,
    pub account: String,
    /// Seconds talked, or empty when not answered.
    pub talked: String,
    pub end_reason: String,
    pub code: String,
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86400, secs % 86400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

impl Line {
    fn of(e: &HistoryEntry) -> Line {
        Line {
            start: utc(e.start),
            direction: e.direction.clone(),
            remote: e.remote.clone(),
            account: e.account.clone(),
            talked: if e.answered == 0 {
                String::new()
            } else {
                (e.end.saturating_sub(e.answered) / 1000).to_string()
            },
            end_reason: e.end_reason.clone(),
            code: if e.code == 0 {
                String::new()
            } else {
                e.code.to_string()
            },
        }
    }
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    filter: Filter,
    total: usize,
    matching: usize,
    pages: usize,
    lines: Vec<Line>,
}

async fn show(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let session = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filter = Filter::of(&form::pairs(uri.query().unwrap_or_default().as_bytes()));
    let (entries, code, error) = match app.peers.sip.history().await {
        Ok(entries) => (entries, StatusCode::OK, None),
        Err(e) => {
            let e = ApiError::from(e);
            (Vec::new(), e.status, Some(e.error))
        }
    };
    let matching: Vec<&HistoryEntry> = entries.iter().rev().filter(|e| filter.matches(e)).collect();
    let pages = matching.len().div_ceil(PER_PAGE).max(1);
    let filter = Filter {
        page: filter.page.min(pages),
        ..filter
    };
    let lines = matching
        .iter()
        .skip((filter.page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|e| Line::of(e))
        .collect();
    let page = HistoryPage {
        title: "Call history",
        menu: Menu::of(&session),
        message: None,
        error,
        total: entries.len(),
        matching: matching.len(),
        pages,
        filter,
        lines,
    };
    render(code, &page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_709_210_096_000), "2024-02-29 12:34:56");
        assert_eq!(super::utc(4_102_444_799_999), "2099-12-31 23:59:59");
    }
}
