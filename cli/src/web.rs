//! `doorctl web`: the users of the web pages and the HTTP API.
//!
//! Passwords never leave this process: it stores an Argon2id hash (for the
//! pages and HTTP Basic) and the SHA-256 HA1 of HTTP Digest (RFC 7616) in the
//! configuration's `web.users` through Config1, which only root and the
//! doorphone group may change.

use std::io::{self, BufRead, IsTerminal};

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use clap::{Subcommand, ValueEnum};
use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::config::document::{WEB_DIGEST_REALM, WebRole, WebUser};
use doorphone_interfaces::json;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::args::Format;
use crate::failure::Failure;
use crate::output::{self, Table};

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// The longest password accepted (Argon2 takes more, browsers and clients
/// rarely send more).
pub const MAX_PASSWORD: usize = 128;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set a user's password (the user is added when new); the password is
    /// read from standard input, twice when that is a terminal.
    Passwd {
        /// The user's name: 1-32 of A-Z a-z 0-9 . _ -
        name: String,
        /// What the user may do: `admin` everything, `user` status, history,
        /// doors and the snapshot [default: admin for a new user, else unchanged].
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Remove a user.
    Remove {
        /// The user's name.
        name: String,
    },
    /// Show the users and their roles.
    Users(Format),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    Admin,
    User,
}

impl From<Role> for WebRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => WebRole::Admin,
            Role::User => WebRole::User,
        }
    }
}

#[derive(Debug, Serialize)]
struct Shown {
    name: String,
    role: &'static str,
    digest: bool,
}

pub async fn run(config: &Config1Proxy<'_>, command: Command) -> Result<(), Failure> {
    match command {
        Command::Passwd { name, role } => {
            let password = read_password(&name)?;
            let mut users = users(config).await?;
            let user = new_user(&name, role.map(WebRole::from), &password, &users)?;
            match users.iter_mut().find(|u| u.name == name) {
                Some(existing) => *existing = user,
                None => users.push(user),
            }
            store(config, &users).await
        }
        Command::Remove { name } => {
            let mut users = users(config).await?;
            let before = users.len();
            users.retain(|u| u.name != name);
            if users.len() == before {
                return Err(Failure::Message(format!("no web user {name:?}")));
            }
            store(config, &users).await
        }
        Command::Users(format) => {
            let shown: Vec<Shown> = users(config)
                .await?
                .into_iter()
                .map(|u| Shown {
                    role: u.role.name(),
                    digest: !u.digest_ha1.is_empty(),
                    name: u.name,
                })
                .collect();
            output::show(&shown[..], format, table)
        }
    }
}

fn table(users: &[Shown]) -> Table {
    let mut table = Table::new(&["NAME", "ROLE", "DIGEST"]);
    for u in users {
        table.row([
            u.name.clone(),
            u.role.to_owned(),
            if u.digest { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table
}

/// The users as Config1 shows them (their hashes masked; storing a mask back
/// keeps the stored hash).
async fn users(config: &Config1Proxy<'_>) -> Result<Vec<WebUser>, Failure> {
    let value = config.get("web.users").await?;
    let value =
        json::from_variant(&value).map_err(|e| Failure::Message(format!("web.users: {e}")))?;
    serde_json::from_value(value).map_err(|e| Failure::Message(format!("web.users: {e}")))
}

async fn store(config: &Config1Proxy<'_>, users: &[WebUser]) -> Result<(), Failure> {
    let value = serde_json::to_value(users).expect("users serialise");
    let value =
        json::to_variant(&value).map_err(|e| Failure::Message(format!("web.users: {e}")))?;
    Ok(config.set("web.users", &value).await?)
}

/// The user `name` with `password`: a fresh salt, Argon2id with its default
/// cost (19 MiB, 2 passes), and the Digest HA1.
fn new_user(
    name: &str,
    role: Option<WebRole>,
    password: &str,
    users: &[WebUser],
) -> Result<WebUser, Failure> {
    let role = role
        .or_else(|| users.iter().find(|u| u.name == name).map(|u| u.role))
        .unwrap_or(WebRole::Admin);
    let password_hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| Failure::Message(format!("cannot hash the password: {e}")))?
        .to_string();
    Ok(WebUser {
        name: name.to_owned(),
        role,
        password_hash,
        digest_ha1: digest_ha1(name, password),
    })
}

/// RFC 7616's HA1 for SHA-256: `SHA-256(name:realm:password)` in lowercase hex.
pub fn digest_ha1(name: &str, password: &str) -> String {
    let sum = Sha256::digest(format!("{name}:{WEB_DIGEST_REALM}:{password}").as_bytes());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// A password as the rules take it: 8-128 characters, no control characters.
fn check_password(password: &str) -> Result<(), Failure> {
    let len = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        return Err(Failure::Message(format!(
            "password: must be {MIN_PASSWORD}-{MAX_PASSWORD} characters ({len} given)"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Failure::Message(
            "password: control characters are not allowed".into(),
        ));
    }
    Ok(())
}

/// The new password: typed twice without echo on a terminal, else the first
/// line of standard input.
fn read_password(name: &str) -> Result<String, Failure> {
    let failed = |e: io::Error| Failure::Message(format!("cannot read the password: {e}"));
    let password = if io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("New password for {name}: ")).map_err(failed)?;
        check_password(&first)?;
        let again = rpassword::prompt_password("The same again: ").map_err(failed)?;
        if first != again {
            return Err(Failure::Message(
                "the passwords differ; nothing changed".into(),
            ));
        }
        first
    } else {
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line).map_err(failed)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    };
    check_password(&password)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;

    #[test]
    fn the_ha1_is_rfc_7616s() {
        // RFC 7616 section 3.9.1's example user, with the door phone's realm.
        let expected: String = Sha256::digest(b"Mufasa:doorphone:Circle of Life")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest_ha1("Mufasa", "Circle of Life"), expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn a_new_user_gets_an_argon2id_hash_that_verifies_only_its_password() {
        let user = new_user("installer", None, "correct horse", &[]).unwrap();
        assert_eq!(user.role, WebRole::Admin);
        assert!(user.password_hash.starts_with("$argon2id$v=19$"));
        let parsed = PasswordHash::new(&user.password_hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"correct horsf", &parsed)
                .is_err()
        );
        // A fresh salt each time.
        let again = new_user("installer", None, "correct horse", &[]).unwrap();
        assert_ne!(again.password_hash, user.password_hash);
        assert_eq!(again.digest_ha1, user.digest_ha1);
    }

    #[test]
    fn a_new_password_keeps_the_role_unless_one_is_given() {
        let existing = vec![WebUser {
            name: "tenant".into(),
            role: WebRole::User,
            ..WebUser::default()
        }];
        let kept = new_user("tenant", None, "password1", &existing).unwrap();
        assert_eq!(kept.role, WebRole::User);
        let changed = new_user("tenant", Some(WebRole::Admin), "password1", &existing).unwrap();
        assert_eq!(changed.role, WebRole::Admin);
    }

    #[test]
    fn short_long_and_control_passwords_are_refused() {
        for bad in ["short", &"x".repeat(129), "tab\there1"] {
            assert!(check_password(bad).is_err(), "{bad:?}");
        }
        check_password("eight ch").unwrap();
    }
}
