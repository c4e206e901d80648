//! Accounts 1 and 2: registration with refresh and back-off, unregistration on
//! disable and shutdown, and the DND feature codes dialled when DND changes.

use std::sync::Arc;
use std::time::Duration;

use doorphone_interfaces::config::document::{Account, Transport};
use doorphone_interfaces::sip::{AccountStatus, account_state};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::events::Event;
use crate::identity::Via;
use crate::settings::{Settings, resolve};
use crate::stack::{CallEvent, Credential, Invite};

/// How long a REGISTER may take before it counts as failed.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a DND feature-code call may ring.
const FEATURE_CODE_TIME: Duration = Duration::from_secs(10);

/// What, when it changes, needs a new registration.
fn registration_key(a: &Account) -> (String, String, String, String, Transport, u32) {
    (
        a.user.clone(),
        a.auth_user.clone(),
        a.password.clone(),
        a.server.clone(),
        a.transport,
        a.register_expires,
    )
}

fn configured(settings: &Settings, id: u32) -> Option<Account> {
    settings
        .doc
        .accounts
        .iter()
        .find(|a| a.id == id && a.enabled && !a.user.is_empty() && !a.server.is_empty())
        .cloned()
}

/// Retry delay after `failures` failed attempts: 1, 2, 4 ... 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// When to refresh a registration the server granted for `expires` seconds:
/// at three quarters of it.
pub fn refresh_after(expires: u32) -> Duration {
    Duration::from_millis(u64::from(expires.max(1)) * 750)
}

async fn set(agent: &Agent, id: u32, state: &str, code: u16, reason: &str, aor: &str) {
    let status = AccountStatus {
        id,
        state: state.to_owned(),
        code,
        reason: reason.to_owned(),
        aor: aor.to_owned(),
    };
    {
        let mut accounts = agent.accounts.lock().expect("accounts lock");
        let Some(slot) = accounts.iter_mut().find(|a| a.id == id) else {
            return;
        };
        if *slot == status {
            return;
        }
        *slot = status.clone();
    }
    tracing::info!(account = id, state, code, reason, "account");
    agent.announce(Event::AccountChanged(&status)).await;
}

/// Keeps account `id` registered as the configuration says, until `stop`.
pub async fn run(agent: Arc<Agent>, id: u32, stop: CancellationToken) {
    let mut config: watch::Receiver<Arc<Settings>> = agent.subscribe();
    let mut dnd = config
        .borrow()
        .doc
        .accounts
        .iter()
        .find(|a| a.id == id)
        .map(|a| a.dnd.enabled);
    loop {
        let settings = config.borrow_and_update().clone();
        let Some(account) = configured(&settings, id) else {
            set(&agent, id, account_state::DISABLED, 0, "", "").await;
            tokio::select! {
                changed = config.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            continue;
        };
        let aor = format!("sip:{}@{}", account.user, account.server);
        let key = registration_key(&account);
        let server = match account.transport {
            Transport::Tcp => format!("sip:{};transport=tcp", account.server),
            Transport::Tls => format!("sip:{};transport=tls", account.server),
            _ => format!("sip:{}", account.server),
        };
        let mut registrar = agent.stack.registration(&Credential {
            user: account.user.clone(),
            auth_user: account.auth_user.clone(),
            password: account.password.clone(),
        });
        let mut failures = 0;
        let mut registered;
        'registration: loop {
            set(&agent, id, account_state::REGISTERING, 0, "", &aor).await;
            let wait = match timeout(
                REGISTER_TIMEOUT,
                registrar.register(&server, account.register_expires),
            )
            .await
            {
                Ok(Ok(r)) if r.expires.is_some() => {
                    failures = 0;
                    registered = true;
                    // Where the server is now: its calls are trusted from there.
                    match resolve(&account.server).await {
                        Ok(addrs) => agent.server_resolved(id, &addrs),
                        Err(e) => tracing::warn!(account = id, "server {}: {e}", account.server),
                    }
                    set(
                        &agent,
                        id,
                        account_state::REGISTERED,
                        r.code,
                        &r.reason,
                        &aor,
                    )
                    .await;
                    refresh_after(r.expires.unwrap_or(account.register_expires))
                }
                Ok(Ok(r)) => {
                    failures += 1;
                    registered = false;
                    set(&agent, id, account_state::FAILED, r.code, &r.reason, &aor).await;
                    backoff(failures)
                }
                Ok(Err(e)) => {
                    failures += 1;
                    registered = false;
                    set(&agent, id, account_state::FAILED, 0, &e.to_string(), &aor).await;
                    backoff(failures)
                }
                Err(_) => {
                    failures += 1;
                    registered = false;
                    set(
                        &agent,
                        id,
                        account_state::FAILED,
                        408,
                        "no answer from the server",
                        &aor,
                    )
                    .await;
                    backoff(failures)
                }
            };
            let next = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => continue 'registration,
                    changed = config.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let settings = config.borrow().clone();
                        let now = configured(&settings, id);
                        let new_dnd = now.as_ref().map(|a| a.dnd.enabled);
                        if let Some(a) = &now
                            && registered
                            && dnd.is_some()
                            && new_dnd != dnd
                        {
                            let code = if a.dnd.enabled { &a.dnd.on_code } else { &a.dnd.off_code };
                            if !code.is_empty() {
                                tokio::spawn(feature_code(agent.clone(), id, code.clone()));
                            }
                        }
                        dnd = new_dnd.or(dnd);
                        if now.as_ref().map(registration_key) != Some(key.clone()) {
                            if registered {
                                unregister(&mut registrar, &server, id).await;
                            }
                            break 'registration;
                        }
                    }
                    _ = stop.cancelled() => {
                        if registered {
                            unregister(&mut registrar, &server, id).await;
                        }
                        return;
                    }
                }
            }
        }
    }
}

async fn unregister(registrar: &mut crate::stack::Registrar, server: &str, id: u32) {
    match timeout(Duration::from_secs(2), registrar.register(server, 0)).await {
        Ok(Ok(r)) => tracing::info!(account = id, code = r.code, "unregistered"),
        Ok(Err(e)) => tracing::warn!(account = id, "unregister: {e}"),
        Err(_) => tracing::warn!(account = id, "unregister: no answer"),
    }
}

/// Dials a DND feature code to the account's server, and ends that call when
/// the server answers, or after ten seconds.
async fn feature_code(agent: Arc<Agent>, id: u32, code: String) {
    let settings = agent.settings();
    let route = match agent.route(&settings, &code, Some(Via::Account(id))) {
        Ok(route) => route,
        Err(e) => {
            tracing::warn!(account = id, "DND code {code}: {e}");
            return;
        }
    };
    let media = match agent
        .media()
        .create_offer(agent.media_options(Via::Account(id), false))
        .await
    {
        Ok(session) => Some(session),
        Err(e) => {
            tracing::warn!(account = id, "DND code {code}: no media offer: {e}");
            None
        }
    };
    let invite = Invite {
        from: route.from,
        display_name: route.display_name,
        to: route.to.clone(),
        destination: route.destination,
        transport: route.transport,
        credential: route.credential,
        offer: media.as_ref().map(|(_, sdp)| sdp.clone()),
    };
    tracing::info!(account = id, to = %route.to, "dialling the DND code");
    match agent.stack.invite(invite) {
        Ok((leg, mut events)) => {
            let deadline = Instant::now() + FEATURE_CODE_TIME;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        leg.hangup().await.ok();
                        break;
                    }
                    event = events.next() => match event {
                        Some(CallEvent::Answered(_)) => {
                            leg.hangup().await.ok();
                            break;
                        }
                        Some(CallEvent::Ended(_)) | None => break,
                        Some(_) => {}
                    },
                }
            }
        }
        Err(e) => tracing::warn!(account = id, "DND code {code}: {e}"),
    }
    if let Some((session, _)) = media {
        agent.stop_media(&session).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn refreshes_at_three_quarters_of_the_granted_time() {
        assert_eq!(refresh_after(1800), Duration::from_secs(1350));
        assert_eq!(refresh_after(4), Duration::from_secs(3));
    }
}
