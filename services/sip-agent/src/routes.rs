//! Where a dialled number goes: through the dial plan to its targets, each
//! through an account (to its server, with its credentials) or directly to an
//! IP address; and placing the call.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use doorphone_interfaces::config::document::{AccountChoice, Transport};

use crate::agent::Agent;
use crate::call::CallShared;
use crate::error::AgentError;
use crate::identity::{Identity, Via};
use crate::machine::plan::Plan;
use crate::settings::Settings;
use crate::stack::Credential;

/// Where an outgoing branch goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub to: String,
    pub from: String,
    pub display_name: String,
    pub destination: Option<SocketAddr>,
    pub transport: Transport,
    pub credential: Option<Credential>,
    pub via: Via,
}

impl Route {
    /// Who the callee is, as the door phone knows it: the user its account's
    /// server was asked for, or the address it was called at.
    pub fn peer(&self) -> Identity {
        match (self.via, self.destination) {
            (Via::Account(account), _) => Identity::User {
                account,
                uri: self.to.clone(),
                user: self
                    .to
                    .get(4..)
                    .and_then(|rest| rest.split_once('@'))
                    .map(|(user, _)| user.to_owned())
                    .unwrap_or_default(),
            },
            (Via::Ip, Some(addr)) => Identity::Address(addr),
            // A SIP URI called directly: its host is where it goes.
            (Via::Ip, None) => {
                let host = self.to.get(4..).unwrap_or("");
                let host = host.split_once('@').map_or(host, |(_, h)| h);
                host.parse::<SocketAddr>()
                    .or_else(|_| host.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 5060)))
                    .map(Identity::Address)
                    .unwrap_or(Identity::User {
                        account: 0,
                        uri: self.to.clone(),
                        user: String::new(),
                    })
            }
        }
    }
}

impl Agent {
    /// Where a dialled target goes, through which account.
    pub fn route(
        &self,
        settings: &Settings,
        target: &str,
        choice: Option<Via>,
    ) -> Result<Route, AgentError> {
        let doc = &settings.doc;
        let display_name = doc.device.name.clone();
        let door = format!("sip:door@{}", self.stack.contact_ip());
        let direct = |addr: SocketAddr| Route {
            to: format!("sip:{addr}"),
            from: door.clone(),
            display_name: display_name.clone(),
            destination: Some(addr),
            transport: Transport::Udp,
            credential: None,
            via: Via::Ip,
        };
        if let Ok(ip) = target.parse::<IpAddr>() {
            return Ok(direct(SocketAddr::new(ip, 5060)));
        }
        if let Ok(addr) = target.parse::<SocketAddr>() {
            return Ok(direct(addr));
        }
        let account = match choice {
            Some(Via::Account(id)) => {
                if !doc.accounts.iter().any(|a| a.id == id && a.enabled) {
                    return Err(AgentError::Invalid(format!("account {id} is not enabled")));
                }
                Some(id)
            }
            Some(Via::Ip) => None,
            None => [1, 2].into_iter().find(|id| self.registered(*id)),
        };
        let is_uri = target.len() > 4 && target[..4].eq_ignore_ascii_case("sip:");
        let Some(id) = account else {
            if is_uri {
                return Ok(Route {
                    to: target.to_owned(),
                    from: door,
                    display_name,
                    destination: None,
                    transport: Transport::Udp,
                    credential: None,
                    via: Via::Ip,
                });
            }
            return Err(AgentError::Invalid(format!(
                "{target}: a number needs a registered account, and none is registered"
            )));
        };
        let a = doc
            .accounts
            .iter()
            .find(|a| a.id == id)
            .expect("the account was checked");
        let host = a.server.clone();
        if !is_uri
            && !target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "*#+-_.".contains(c))
        {
            return Err(AgentError::Invalid(format!(
                "{target:?} is not a number, SIP URI or IP address"
            )));
        }
        Ok(Route {
            to: if is_uri {
                target.to_owned()
            } else {
                format!("sip:{target}@{host}")
            },
            from: format!("sip:{}@{host}", a.user),
            display_name: if a.display_name.is_empty() {
                display_name
            } else {
                a.display_name.clone()
            },
            destination: if is_uri {
                None
            } else {
                settings.servers.get(&id).copied()
            },
            transport: a.transport,
            credential: Some(Credential {
                user: a.user.clone(),
                auth_user: a.auth_user.clone(),
                password: a.password.clone(),
            }),
            via: Via::Account(id),
        })
    }

    /// The routes of `numbers`, each through the dial plan (a prefix brings
    /// its targets and its account, unless `account` says otherwise).
    pub fn resolve(
        &self,
        settings: &Settings,
        numbers: &[String],
        account: Option<Via>,
    ) -> Result<Vec<Route>, AgentError> {
        let mut routes = Vec::new();
        for number in numbers {
            let (choice, targets) = settings.plan.resolve(number.trim());
            let choice = account.or(match choice {
                AccountChoice::Auto => None,
                AccountChoice::Account(id) => Some(Via::Account(id)),
            });
            for target in targets {
                routes.push(self.route(settings, &target, choice)?);
            }
        }
        if routes.is_empty() {
            return Err(AgentError::Invalid("nothing to call".into()));
        }
        Ok(routes)
    }

    /// Places a call to `number` through the dial plan; every target rings at
    /// once and the first answer wins.
    pub async fn dial(
        self: &Arc<Self>,
        number: &str,
        account: Option<Via>,
        video: Option<bool>,
    ) -> Result<Arc<CallShared>, AgentError> {
        if number.trim().is_empty() {
            return Err(AgentError::Invalid("number: empty".into()));
        }
        let settings = self.settings();
        let routes = self.resolve(&settings, &[number.trim().to_owned()], account)?;
        let plan = Plan::Group {
            refusal_ends_all: false,
            ring_for: Duration::from_secs(u64::from(settings.doc.calls.max_dial_out_time)),
        };
        crate::calls::outgoing::place(self, &settings, routes, video, plan, None).await
    }
}
