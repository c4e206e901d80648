//! The web pages' sessions: a random token in a cookie that is `Secure`,
//! `HttpOnly` and `SameSite=Strict`, ended after `web.session_timeout` seconds
//! without a request, and a CSRF token per session that every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use doorphone_interfaces::config::document::{WebRole, WebUser};

use crate::digest::equal;

/// The session cookie (`__Host-`: Secure, path `/`, no domain).
pub const COOKIE: &str = "__Host-doorphone-session";
/// The login form's own token, before there is a session.
pub const LOGIN_COOKIE: &str = "__Host-doorphone-login";
/// Sessions kept at most; the least recently used goes first.
const MAX_SESSIONS: usize = 32;

/// A random token, base64url without padding.
pub fn token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// A cookie that only this site's HTTPS pages send back.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub role: WebRole,
    pub csrf: String,
    last: Instant,
}

impl Session {
    /// Whether `token` is this session's CSRF token.
    pub fn csrf_ok(&self, token: &str) -> bool {
        equal(self.csrf.as_bytes(), token.as_bytes())
    }
}

#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `name`; its cookie token.
    pub fn create(&self, name: &str, role: WebRole, now: Instant) -> String {
        let mut sessions = self.by_token.lock().expect("not poisoned");
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(t, _)| t.clone());
            match oldest {
                Some(t) => sessions.remove(&t),
                None => break,
            };
        }
        let token = token();
        sessions.insert(
            token.clone(),
            Session {
                name: name.to_owned(),
                role,
                csrf: self::token(),
                last: now,
            },
        );
        token
    }

    /// The live session of `token`, touched; `None` once it has been idle for
    /// `timeout` or its user is gone. The role is the user's current one.
    pub fn get(
        &self,
        token: &str,
        users: &[WebUser],
        timeout: Duration,
        now: Instant,
    ) -> Option<Session> {
        self.check(token, users, timeout, now, Activity::User)
    }

    /// The live session of `token`; only a request of the user's own
    /// (`Activity::User`) starts its idle time again, not one the page makes
    /// by itself (the status page's refresh, its snapshot).
    pub fn check(
        &self,
        token: &str,
        users: &[WebUser],
        timeout: Duration,
        now: Instant,
        activity: Activity,
    ) -> Option<Session> {
        let mut sessions = self.by_token.lock().expect("not poisoned");
        let session = sessions.get_mut(token)?;
        let user = users.iter().find(|u| u.name == session.name);
        match user {
            Some(user) if now.duration_since(session.last) < timeout => {
                if activity == Activity::User {
                    session.last = now;
                }
                session.role = user.role;
                Some(session.clone())
            }
            _ => {
                sessions.remove(token);
                None
            }
        }
    }

    pub fn remove(&self, token: &str) {
        self.by_token.lock().expect("not poisoned").remove(token);
    }
}

/// Who made a request of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// The user: a page opened, a form sent.
    User,
    /// The page itself: a refresh, an image it loads again.
    Page,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: WebRole) -> WebUser {
        WebUser {
            name: name.to_owned(),
            role,
            ..WebUser::default()
        }
    }

    #[test]
    fn a_session_ends_after_its_idle_time_and_with_its_user() {
        let sessions = Sessions::default();
        let users = [user("installer", WebRole::Admin)];
        let t0 = Instant::now();
        let timeout = Duration::from_secs(60);
        let token = sessions.create("installer", WebRole::Admin, t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(sessions.get(&token, &users, timeout, at(59)).is_some());
        // Each request starts the idle time again.
        assert!(sessions.get(&token, &users, timeout, at(118)).is_some());
        assert!(sessions.get(&token, &users, timeout, at(178)).is_none());
        assert!(
            sessions.get(&token, &users, timeout, at(1)).is_none(),
            "gone for good"
        );

        let token = sessions.create("installer", WebRole::Admin, t0);
        assert!(sessions.get(&token, &[], timeout, t0).is_none());
        assert!(sessions.get("forged", &users, timeout, t0).is_none());
    }

    #[test]
    fn the_pages_own_refreshes_do_not_keep_a_session_alive() {
        let sessions = Sessions::default();
        let users = [user("installer", WebRole::Admin)];
        let t0 = Instant::now();
        let timeout = Duration::from_secs(60);
        let token = sessions.create("installer", WebRole::Admin, t0);
        let at = |s| t0 + Duration::from_secs(s);
        for s in (5..60).step_by(5) {
            assert!(
                sessions
                    .check(&token, &users, timeout, at(s), Activity::Page)
                    .is_some()
            );
        }
        assert!(
            sessions
                .check(&token, &users, timeout, at(61), Activity::Page)
                .is_none(),
            "the refreshes alone end it after its idle time"
        );
        let token = sessions.create("installer", WebRole::Admin, t0);
        assert!(sessions.get(&token, &users, timeout, at(50)).is_some());
        assert!(
            sessions
                .check(&token, &users, timeout, at(100), Activity::Page)
                .is_some(),
            "a user's request starts it again"
        );
    }

    #[test]
    fn the_role_is_the_users_current_one_and_csrf_is_per_session() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let a = sessions.create("installer", WebRole::Admin, t0);
        let b = sessions.create("installer", WebRole::Admin, t0);
        let users = [user("installer", WebRole::User)];
        let sa = sessions
            .get(&a, &users, Duration::from_secs(60), t0)
            .unwrap();
        let sb = sessions
            .get(&b, &users, Duration::from_secs(60), t0)
            .unwrap();
        assert_eq!(sa.role, WebRole::User);
        assert!(sa.csrf_ok(&sa.csrf));
        assert!(!sa.csrf_ok(&sb.csrf));
        assert!(!sa.csrf_ok(""));
    }

    #[test]
    fn cookies_are_read_among_others_and_set_strictly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; __Host-doorphone-session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(COOKIE, "xyz", None);
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
    }
}
