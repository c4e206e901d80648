//! Intercom > Dial Plan: the rules (up to 500) listed 50 a page, searched by
//! prefix or name, each editable and removable where it is listed, and a form
//! to add one. Every change goes through the config service's dial-plan
//! methods; a refusal shows beside the field it names, in the form that was
//! submitted, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use doorphone_interfaces::config::DialRuleEntry;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, checked_form, render};
use crate::sessions::Session;

/// Rules on one page.
pub const PER_PAGE: usize = 50;

pub fn router() -> Router<App> {
    Router::new()
        .route("/intercom/dial-plan", get(list).post(add))
        .route("/intercom/dial-plan/{id}", post(update))
        .route("/intercom/dial-plan/{id}/remove", post(remove))
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

    /// Puts the config service's refusal beside the field it names
    /// (`dial_plan[ID].FIELD`).
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

/// Which rules the page lists: the search and the page number (from 1).
pub struct View {
    pub q: String,
    pub page: usize,
}

impl View {
    fn of(pairs: &[(String, String)]) -> View {
        View {
            q: form::one(pairs, "q").unwrap_or_default().trim().to_owned(),
            page: form::one(pairs, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
        }
    }

    /// A rule matches when its prefix starts with the search or its name
    /// holds it (letters in any case).
    fn matches(&self, rule: &DialRuleEntry) -> bool {
        let q = self.q.to_lowercase();
        rule.prefix.starts_with(&self.q) || rule.name.to_lowercase().contains(&q)
    }

    /// The link to page `page` of this search.
    pub fn link(&self, page: usize) -> String {
        let query = serde_urlencoded::to_string([("q", self.q.as_str())]).unwrap_or_default();
        format!("/intercom/dial-plan?{query}&page={page}")
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
    view: View,
    total: usize,
    matching: usize,
    pages: usize,
    rules: Vec<RuleForm>,
    new_rule: RuleForm,
}

/// The page of `view`, with `submitted` (the form that was refused) in
/// place of its stored rule, `message` or `error` above it.
async fn page(
    app: &App,
    session: &Session,
    code: StatusCode,
    view: View,
    submitted: Option<RuleForm>,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let (all, error) = match app.peers.config.list_dial_plan().await {
        Ok(all) => (all, error),
        Err(e) => (Vec::new(), Some(ApiError::from(e).error)),
    };
    let matching: Vec<&DialRuleEntry> = all.iter().filter(|r| view.matches(r)).collect();
    let pages = matching.len().div_ceil(PER_PAGE).max(1);
    let view = View {
        page: view.page.min(pages),
        ..view
    };
    let mut submitted = submitted;
    let mut rules: Vec<RuleForm> = matching
        .iter()
        .skip((view.page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|rule| match submitted.take_if(|s| s.id == Some(rule.id)) {
            Some(typed) => typed,
            None => RuleForm::of(rule),
        })
        .collect();
    // A refused edit of a rule this page does not list is shown first.
    if let Some(typed) = submitted.take_if(|s| s.id.is_some()) {
        rules.insert(0, typed);
    }
    let new_rule = submitted.unwrap_or_else(|| RuleForm {
        account: "auto".to_owned(),
        ..RuleForm::default()
    });
    let page = DialPlanPage {
        title: "Intercom > Dial Plan",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        total: all.len(),
        matching: matching.len(),
        pages,
        view,
        rules,
        new_rule,
    };
    render(code, &page)
}

async fn list(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let view = View::of(&form::pairs(uri.query().unwrap_or_default().as_bytes()));
    page(&app, &session, StatusCode::OK, view, None, None, None).await
}

/// Checks the session and the form, then adds (no `id`), saves or removes
/// the rule; shows the page with what was done or the refusal beside its
/// field.
async fn submit(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
    id: Option<u32>,
    remove: bool,
) -> Response {
    let session = match admin(app, headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let pairs = match checked_form(&session, body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let view = View::of(&pairs);
    let mut typed = RuleForm::from_form(id, &pairs);
    let config = &app.peers.config;
    let targets = typed.target_list();
    let done = match (id, remove) {
        (Some(id), true) => config
            .remove_dial_rule(id)
            .await
            .map(|()| format!("Rule {id} removed")),
        (Some(id), false) => config
            .update_dial_rule(id, &typed.name, &typed.prefix, &typed.account, &targets)
            .await
            .map(|()| format!("Rule {id} saved")),
        (None, _) => config
            .add_dial_rule(&typed.name, &typed.prefix, &typed.account, &targets)
            .await
            .map(|id| format!("Rule {id} added")),
    };
    match done {
        Ok(message) => {
            page(
                app,
                &session,
                StatusCode::OK,
                view,
                None,
                Some(message),
                None,
            )
            .await
        }
        Err(e) if remove => {
            let e = ApiError::from(e);
            page(app, &session, e.status, view, None, None, Some(e.error)).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            typed.refused(e.field.as_deref(), e.error);
            page(app, &session, e.status, view, Some(typed), None, None).await
        }
    }
}

async fn add(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    submit(&app, &headers, &body, None, false).await
}

async fn update(
    State(app): State<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit(&app, &headers, &body, Some(id), false).await
}

async fn remove(
    State(app): State<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit(&app, &headers, &body, Some(id), true).await
}
