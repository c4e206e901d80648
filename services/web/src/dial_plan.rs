//! Intercom > Dial Plan: the rules (up to 500) listed 50 a page, searched by
//! prefix or name, each editable and removable where it is listed, and a form
//! to add one. Every change goes through the config service's dial-plan
//! methods; a refusal shows beside the field it names, in the form that was
//! submitted, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use doorphone_interfaces::config::{self, DialRuleEntry};

use crate::api::App;
use crate::form;
use crate::listing::{self, Entry, EntryForm, ListPage, Listing};
use crate::pages::{Menu, render};
use crate::sessions::Session;

/// The page's path.
const BASE: &str = "/intercom/dial-plan";

pub fn router() -> Router<App> {
    listing::router::<DialPlan>()
}

/// One rule's form: what it holds (as stored or as typed) and the refusals
/// beside its fields.
#[derive(Default)]
pub struct RuleForm {
    /// `None` for the form that adds a rule.
    pub id: Option<u32>,
    pub name: String,
    pub prefix: String,
    pub account: String,
    /// The targets, separated by spaces.
    pub targets: String,
    pub name_error: Option<String>,
    pub prefix_error: Option<String>,
    pub account_error: Option<String>,
    pub targets_error: Option<String>,
    pub other_error: Option<String>,
}

impl RuleForm {
    fn of(rule: &DialRuleEntry) -> RuleForm {
        RuleForm {
            id: Some(rule.id),
            name: rule.name.clone(),
            prefix: rule.prefix.clone(),
            account: rule.account.clone(),
            targets: rule.replace.join(" "),
            ..RuleForm::default()
        }
    }

    fn from_form(id: Option<u32>, pairs: &[(String, String)]) -> RuleForm {
        let field = |name| form::one(pairs, name).unwrap_or_default().trim().to_owned();
        RuleForm {
            id,
            name: field("name"),
            prefix: field("prefix"),
            account: field("account"),
            targets: field("targets"),
            ..RuleForm::default()
        }
    }

    /// The targets typed: separated by spaces or commas.
    fn target_list(&self) -> Vec<&str> {
        self.targets
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .collect()
    }

    pub fn is(&self, account: &str) -> bool {
        self.account == account
    }

    pub fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/intercom/dial-plan/{id}"),
            None => "/intercom/dial-plan".to_owned(),
        }
    }
}

/// A rule matches when its prefix starts with the search or its name
/// holds it (letters in any case).
fn matches(q: &str, rule: &DialRuleEntry) -> bool {
    let q = q.to_lowercase();
    rule.prefix.starts_with(&q) || rule.name.to_lowercase().contains(&q)
}

impl Entry for DialRuleEntry {
    fn id(&self) -> u32 {
        self.id
    }
}

impl EntryForm<DialRuleEntry> for RuleForm {
    fn id(&self) -> Option<u32> {
        self.id
    }

    fn of(entry: &DialRuleEntry) -> RuleForm {
        RuleForm::of(entry)
    }

    fn blank() -> RuleForm {
        RuleForm {
            account: "auto".to_owned(),
            ..RuleForm::default()
        }
    }

    fn refused(&mut self, field: Option<&str>, message: String) {
        let part = field
            .and_then(|f| f.strip_prefix("dial_plan["))
            .and_then(|f| f.split_once("]."))
            .map(|(_, part)| part);
        let slot = match part {
            Some("name") => &mut self.name_error,
            Some("prefix") => &mut self.prefix_error,
            Some("account") => &mut self.account_error,
            Some(p) if p.starts_with("replace") => &mut self.targets_error,
            _ => &mut self.other_error,
        };
        *slot = Some(message);
    }
}

#[derive(Template)]
#[template(path = "dial_plan.html")]
struct DialPlanPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    list: Listing<RuleForm>,
}

/// The page.
pub struct DialPlan;

impl ListPage for DialPlan {
    const BASE: &'static str = BASE;
    type Entry = DialRuleEntry;
    type Form = RuleForm;

    fn matches(q: &str, entry: &DialRuleEntry) -> bool {
        matches(q, entry)
    }

    async fn entries(app: &App) -> Result<Vec<DialRuleEntry>, config::Error> {
        app.peers.config.list_dial_plan().await
    }

    fn typed(id: Option<u32>, pairs: &[(String, String)]) -> RuleForm {
        RuleForm::from_form(id, pairs)
    }

    async fn apply(
        app: &App,
        id: Option<u32>,
        remove: bool,
        t: &RuleForm,
    ) -> Result<String, config::Error> {
        let config = &app.peers.config;
        let targets = t.target_list();
        match (id, remove) {
            (Some(id), true) => config
                .remove_dial_rule(id)
                .await
                .map(|()| format!("Rule {id} removed")),
            (Some(id), false) => config
                .update_dial_rule(id, &t.name, &t.prefix, &t.account, &targets)
                .await
                .map(|()| format!("Rule {id} saved")),
            (None, _) => config
                .add_dial_rule(&t.name, &t.prefix, &t.account, &targets)
                .await
                .map(|id| format!("Rule {id} added")),
        }
    }

    fn render(
        session: &Session,
        code: StatusCode,
        list: Listing<RuleForm>,
        message: Option<String>,
        error: Option<String>,
    ) -> Response {
        let page = DialPlanPage {
            title: "Intercom > Dial Plan",
            menu: Menu::of(session),
            message,
            error,
            csrf: session.csrf.clone(),
            list,
        };
        render(code, &page)
    }
}
