//! What the pages that list entries share (Intercom > Dial Plan, Contacts):
//! the search and the page of 50, each entry in its own form, a refused
//! form shown in place of the entry it edits (or first, when the page does
//! not list it, or as the form that adds one).

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use doorphone_interfaces::config;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::admin;
use crate::section;
use crate::sessions::Session;

/// Entries on one page.
pub const PER_PAGE: usize = 50;

/// Which entries the page lists: the search and the page number (from 1).
pub struct View {
    pub q: String,
    pub page: usize,
    /// The page's path.
    base: &'static str,
}

impl View {
    pub fn of(base: &'static str, pairs: &[(String, String)]) -> View {
        View {
            q: form::one(pairs, "q").unwrap_or_default().trim().to_owned(),
            page: form::one(pairs, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
            base,
        }
    }

    pub fn base(&self) -> &'static str {
        self.base
    }

    /// The link to page `page` of this search.
    pub fn link(&self, page: usize) -> String {
        let query = serde_urlencoded::to_string([("q", self.q.as_str())]).unwrap_or_default();
        format!("{}?{query}&page={page}", self.base)
    }
}

/// An entry as its config service method lists it.
pub trait Entry {
    fn id(&self) -> u32;
}

/// The form of an entry.
pub trait EntryForm<E>: Sized {
    /// `None` for the form that adds one.
    fn id(&self) -> Option<u32>;
    fn of(entry: &E) -> Self;
    /// The empty form that adds one.
    fn blank() -> Self;
    /// Puts the config service's refusal beside the field it names.
    fn refused(&mut self, field: Option<&str>, message: String);
}

/// A page that lists the entries of one kind, each in its own form.
pub trait ListPage: 'static {
    /// The page's path; an entry's form posts to `BASE/ID`, its removal to
    /// `BASE/ID/remove`, a new one to `BASE`.
    const BASE: &'static str;
    type Entry: Entry + Send + Sync;
    type Form: EntryForm<Self::Entry> + Send + Sync;
    /// Whether the search `q` lets the entry through.
    fn matches(q: &str, entry: &Self::Entry) -> bool;
    fn entries(app: &App) -> impl Future<Output = Result<Vec<Self::Entry>, config::Error>> + Send;
    /// The form as typed.
    fn typed(id: Option<u32>, pairs: &[(String, String)]) -> Self::Form;
    /// Adds (no `id`), saves or removes the entry; says what was done.
    fn apply(
        app: &App,
        id: Option<u32>,
        remove: bool,
        form: &Self::Form,
    ) -> impl Future<Output = Result<String, config::Error>> + Send;
    fn render(
        session: &Session,
        code: StatusCode,
        list: Listing<Self::Form>,
        message: Option<String>,
        error: Option<String>,
    ) -> Response;
}

pub fn router<P: ListPage>() -> Router<App> {
    Router::new()
        .route(P::BASE, get(list::<P>).post(add::<P>))
        .route(&format!("{}/{{id}}", P::BASE), post(update::<P>))
        .route(&format!("{}/{{id}}/remove", P::BASE), post(remove::<P>))
}

/// The page of `view`, with `submitted` (the form that was refused) in
/// place of its stored entry, `message` or `error` above it.
async fn page<P: ListPage>(
    app: &App,
    session: &Session,
    code: StatusCode,
    view: View,
    submitted: Option<P::Form>,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let (all, error) = match P::entries(app).await {
        Ok(all) => (all, error),
        Err(e) => (Vec::new(), Some(ApiError::from(e).error)),
    };
    let list = arrange(&all, view, submitted, P::matches);
    P::render(session, code, list, message, error)
}

async fn list<P: ListPage>(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let query = form::pairs(uri.query().unwrap_or_default().as_bytes());
    let view = View::of(P::BASE, &query);
    page::<P>(&app, &session, StatusCode::OK, view, None, None, None).await
}

/// Checks the session and the form, then adds (no `id`), saves or removes
/// the entry; shows the page with what was done or the refusal beside its
/// field, in the form that was submitted, with what was typed kept.
async fn submit<P: ListPage>(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
    id: Option<u32>,
    remove: bool,
) -> Response {
    let (session, pairs) = match section::admin_form(app, headers, body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let view = View::of(P::BASE, &pairs);
    let mut typed = P::typed(id, &pairs);
    let (code, submitted, message, error) = match P::apply(app, id, remove, &typed).await {
        Ok(message) => (StatusCode::OK, None, Some(message), None),
        Err(e) if remove => {
            let e = ApiError::from(e);
            (e.status, None, None, Some(e.error))
        }
        Err(e) => {
            let e = ApiError::from(e);
            typed.refused(e.field.as_deref(), e.error);
            (e.status, Some(typed), None, None)
        }
    };
    page::<P>(app, &session, code, view, submitted, message, error).await
}

async fn add<P: ListPage>(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    submit::<P>(&app, &headers, &body, None, false).await
}

async fn update<P: ListPage>(
    State(app): State<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit::<P>(&app, &headers, &body, Some(id), false).await
}

async fn remove<P: ListPage>(
    State(app): State<App>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit::<P>(&app, &headers, &body, Some(id), true).await
}

/// One page of entries.
pub struct Listing<F> {
    pub view: View,
    pub total: usize,
    pub matching: usize,
    pub pages: usize,
    pub forms: Vec<F>,
    pub new: F,
}

/// The page `view` asks for of the entries `matches` lets through, with
/// `submitted` in place of its entry.
pub fn arrange<E: Entry, F: EntryForm<E>>(
    all: &[E],
    view: View,
    submitted: Option<F>,
    matches: impl Fn(&str, &E) -> bool,
) -> Listing<F> {
    let matching: Vec<&E> = all.iter().filter(|e| matches(&view.q, e)).collect();
    let pages = matching.len().div_ceil(PER_PAGE).max(1);
    let view = View {
        page: view.page.min(pages),
        ..view
    };
    let mut submitted = submitted;
    let mut forms: Vec<F> = matching
        .iter()
        .skip((view.page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|e| match submitted.take_if(|s| s.id() == Some(e.id())) {
            Some(typed) => typed,
            None => F::of(e),
        })
        .collect();
    // A refused edit of an entry this page does not list is shown first.
    if let Some(typed) = submitted.take_if(|s| s.id().is_some()) {
        forms.insert(0, typed);
    }
    Listing {
        total: all.len(),
        matching: matching.len(),
        pages,
        view,
        forms,
        new: submitted.unwrap_or_else(F::blank),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(u32);
    impl Entry for E {
        fn id(&self) -> u32 {
            self.0
        }
    }
    #[derive(Debug, PartialEq)]
    struct F(Option<u32>, &'static str);
    impl EntryForm<E> for F {
        fn id(&self) -> Option<u32> {
            self.0
        }
        fn of(e: &E) -> F {
            F(Some(e.0), "stored")
        }
        fn blank() -> F {
            F(None, "blank")
        }
        fn refused(&mut self, _: Option<&str>, _: String) {}
    }

    fn view(page: &str) -> View {
        View::of("/x", &[("page".to_owned(), page.to_owned())])
    }

    #[test]
    fn pages_of_fifty_and_the_submitted_form_in_place() {
        let all: Vec<E> = (1..=120).map(E).collect();
        let l = arrange(&all, view("3"), Some(F(Some(101), "typed")), |_, _| true);
        assert_eq!(
            (l.total, l.matching, l.pages, l.view.page),
            (120, 120, 3, 3)
        );
        assert_eq!(l.forms.len(), 20);
        assert_eq!(l.forms[0], F(Some(101), "typed"));
        assert_eq!(l.new, F(None, "blank"));
        // Beyond the last page: the last one; a refused edit it does not list comes first.
        let l = arrange(&all, view("9"), Some(F(Some(1), "typed")), |_, _| true);
        assert_eq!(l.view.page, 3);
        assert_eq!(l.forms[0], F(Some(1), "typed"));
        assert_eq!(l.forms.len(), 21);
        // A refused new entry is the form that adds one.
        let l = arrange(&all, view("1"), Some(F(None, "typed")), |_, e| e.0 < 3);
        assert_eq!((l.matching, l.pages, l.forms.len()), (2, 1, 2));
        assert_eq!(l.new, F(None, "typed"));
        assert_eq!(l.view.link(2), "/x?q=&page=2");
    }
}
