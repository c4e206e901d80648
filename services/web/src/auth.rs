//! Who is asking: HTTP Basic (checked against the user's Argon2id hash) and
//! Digest (RFC 7616, SHA-256, against the user's HA1), the lockout of an
//! address after five failed logins, and the role a route needs.
//!
//! The users are the config document's `web.users`, followed live. An Argon2id
//! check costs tens of milliseconds and ~19 MiB by design: a successful one is
//! remembered (by user and a SHA-256 of the password, never the password) for
//! as long as the user's hash stays the same, so a client that sends its
//! password with every request gets its answer in about a millisecond; at most
//! two checks run at a time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doorphone_daemon::config::Snapshot;
use doorphone_interfaces::config::document::{WEB_DIGEST_REALM, WebRole, WebUser};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, watch};

use crate::digest::{Credentials, Nonces, Refusal};
use crate::error::{ApiError, Peer};
use crate::lockout::{self, Lockout};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the OpenAPI document).
    Public,
    /// Users of either role.
    User,
    /// Admins only.
    Admin,
}

/// The address a request came from (set by the server for every connection).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The user a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Login {
    pub name: String,
    pub role: WebRole,
}

/// Successful password checks remembered at most (all of them are forgotten
/// beyond it).
const MAX_REMEMBERED: usize = 64;

pub struct Auth {
    config: watch::Receiver<Arc<Snapshot>>,
    verified: Mutex<HashMap<(String, [u8; 32]), String>>,
    nonces: Mutex<Nonces>,
    lockout: Mutex<Lockout>,
    hashing: Semaphore,
}

impl Auth {
    pub fn new(config: watch::Receiver<Arc<Snapshot>>) -> Arc<Auth> {
        let auth = Arc::new(Auth {
            config: config.clone(),
            verified: Mutex::default(),
            nonces: Mutex::default(),
            lockout: Mutex::default(),
            hashing: Semaphore::new(2),
        });
        tokio::spawn(forget_changed(Arc::downgrade(&auth), config));
        auth
    }

    /// The configuration as last read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.borrow().clone()
    }

    /// Whether `password` is `user`'s, by its Argon2id hash.
    async fn check_password(&self, user: &WebUser, password: &str) -> bool {
        let key = (
            user.name.clone(),
            <[u8; 32]>::from(Sha256::digest(password.as_bytes())),
        );
        if self
            .verified
            .lock()
            .expect("not poisoned")
            .get(&key)
            .is_some_and(|hash| *hash == user.password_hash)
        {
            return true;
        }
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (hash, password) = (user.password_hash.clone(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().expect("not poisoned");
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
            verified.insert(key, user.password_hash.clone());
        }
        ok
    }

    /// Spends what a password check costs, so an unknown name is answered no
    /// sooner than a known one with a wrong password.
    async fn as_long_as_a_check(&self, password: &str) {
        let Ok(_permit) = self.hashing.acquire().await else {
            return;
        };
        let password = password.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            let mut out = [0u8; 32];
            Argon2::default().hash_password_into(
                password.as_bytes(),
                b"doorphone-no-user",
                &mut out,
            )
        })
        .await;
    }

    /// The 401 answer, with a fresh Digest nonce and the Basic alternative.
    fn challenge(&self, stale: bool) -> ApiError {
        let nonce = self
            .nonces
            .lock()
            .expect("not poisoned")
            .issue(Instant::now());
        let digest = format!(
            "Digest realm=\"{WEB_DIGEST_REALM}\", qop=\"auth\", algorithm=SHA-256, nonce=\"{nonce}\"{}",
            if stale { ", stale=true" } else { "" }
        );
        let basic = format!("Basic realm=\"{WEB_DIGEST_REALM}\", charset=\"UTF-8\"");
        let mut error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required (HTTP Basic or Digest)",
        );
        for value in [digest, basic] {
            if let Ok(value) = HeaderValue::try_from(value) {
                error = error.with_header("www-authenticate", value);
            }
        }
        error
    }

    /// A login form's name and password from `ip`, checked as HTTP Basic
    /// credentials are (the same lockout, the same log).
    pub async fn login(&self, ip: IpAddr, name: &str, password: &str) -> Result<Login, ApiError> {
        use base64::Engine;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        self.authenticate(&Asking {
            ip,
            authorization: Some(format!("Basic {credentials}")),
            method: "POST".to_owned(),
            target: "/login".to_owned(),
        })
        .await
    }

    /// Who `request` comes from, or why it is refused.
    async fn authenticate(&self, request: &Asking) -> Result<Login, ApiError> {
        let ip = request.ip;
        if let Some(left) = self
            .lockout
            .lock()
            .expect("not poisoned")
            .locked(ip, Instant::now())
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins from {ip}: locked out for {} more seconds",
                    left.as_secs().max(1)
                ),
            )
            .with_header("retry-after", HeaderValue::from(left.as_secs().max(1))));
        }
        let snapshot = self.snapshot();
        let users = &snapshot.document.web.users;
        if users.is_empty() {
            if !snapshot.from_service {
                return Err(ApiError::unavailable(Peer::Config));
            }
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no web user is configured: add one on the door phone with `doorctl web passwd NAME`",
            )
            .with_field("web.users"));
        }
        let Some(authorization) = request.authorization.as_deref() else {
            return Err(self.challenge(false));
        };
        let (scheme, params) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let outcome = if scheme.eq_ignore_ascii_case("basic") {
            self.basic(users, params.trim()).await
        } else if scheme.eq_ignore_ascii_case("digest") {
            self.digest(users, params, request)
        } else {
            return Err(self.challenge(false));
        };
        match outcome {
            Ok(user) => {
                self.lockout.lock().expect("not poisoned").succeed(ip);
                Ok(Login {
                    name: user.name.clone(),
                    role: user.role,
                })
            }
            Err(Refusal::Stale) => Err(self.challenge(true)),
            Err(_) => {
                let failure = self
                    .lockout
                    .lock()
                    .expect("not poisoned")
                    .fail(ip, Instant::now());
                match failure {
                    lockout::Failure::LockedOut => tracing::warn!(
                        "{} failed logins from {ip}: locked out for {} s",
                        lockout::MAX_FAILURES,
                        lockout::WINDOW.as_secs()
                    ),
                    lockout::Failure::Counted(n) => {
                        tracing::info!("failed login from {ip} ({n} of {})", lockout::MAX_FAILURES)
                    }
                }
                Err(self.challenge(false))
            }
        }
    }

    async fn basic<'u>(&self, users: &'u [WebUser], encoded: &str) -> Result<&'u WebUser, Refusal> {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Refusal::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
        let (name, password) = decoded.split_once(':').ok_or(Refusal::Malformed)?;
        let Some(user) = users.iter().find(|u| u.name == name) else {
            self.as_long_as_a_check(password).await;
            return Err(Refusal::Wrong);
        };
        if self.check_password(user, password).await {
            Ok(user)
        } else {
            Err(Refusal::Wrong)
        }
    }

    fn digest<'u>(
        &self,
        users: &'u [WebUser],
        params: &str,
        request: &Asking,
    ) -> Result<&'u WebUser, Refusal> {
        let c = Credentials::parse(params).ok_or(Refusal::Malformed)?;
        if c.uri != request.target {
            return Err(Refusal::Malformed);
        }
        let user = users
            .iter()
            .find(|u| u.name == c.username && !u.digest_ha1.is_empty())
            .ok_or(Refusal::Wrong)?;
        self.nonces.lock().expect("not poisoned").verify(
            &c,
            WEB_DIGEST_REALM,
            &user.digest_ha1,
            &request.method,
            Instant::now(),
        )?;
        Ok(user)
    }
}

/// Forgets the remembered checks of every user whose hash changed.
async fn forget_changed(auth: std::sync::Weak<Auth>, mut config: watch::Receiver<Arc<Snapshot>>) {
    while config.changed().await.is_ok() {
        let snapshot = config.borrow_and_update().clone();
        let Some(auth) = auth.upgrade() else { return };
        let users = &snapshot.document.web.users;
        auth.verified
            .lock()
            .expect("not poisoned")
            .retain(|(name, _), hash| {
                users
                    .iter()
                    .any(|u| u.name == *name && u.password_hash == *hash)
            });
    }
}

/// What authentication reads of a request.
pub struct Asking {
    pub ip: IpAddr,
    pub authorization: Option<String>,
    pub method: String,
    /// The path and query, as Digest's `uri` names them.
    pub target: String,
}

impl Asking {
    pub fn of(request: &Request) -> Asking {
        Asking {
            ip: request
                .extensions()
                .get::<PeerAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip()),
            authorization: request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            method: request.method().as_str().to_owned(),
            target: request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
        }
    }
}

/// What a route's middleware holds: the authenticator and the route's access.
#[derive(Clone)]
pub struct Gate {
    pub auth: Arc<Auth>,
    pub access: Access,
}

/// The middleware of every route: authenticates, then checks the role.
pub async fn require(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    if gate.access == Access::Public {
        return next.run(request).await;
    }
    let asking = Asking::of(&request);
    let login = match gate.auth.authenticate(&asking).await {
        Ok(login) => login,
        Err(e) => return e.into_response(),
    };
    if gate.access == Access::Admin && login.role != WebRole::Admin {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} has the role user: this needs an admin", login.name),
        )
        .into_response();
    }
    request.extensions_mut().insert(login);
    next.run(request).await
}
