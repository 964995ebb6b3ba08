//! The desk's pages: one handler per route, each rendering one template.
//! Reads come from klad-core views of [`Backend::process_docs`]; writes go
//! to the [`Backend`]. Every form post is checked for its origin and its
//! form secret first ([`crate::session`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use klad_core::rules::{Action, Phase, Role, may};
use klad_core::views::{self, AnswerView, ArticleView, ThreadKind, ThreadStatus, ThreadView};
use klad_core::{AnchorView, AnswerStatus, ArticleId, ContributionId, ProcessDocs, ProcessInfo};
use serde::Deserialize;

use crate::backend::{Act, Backend, DeskError, InvitationProblem, NewInvitation, StoredSession};
use crate::i18n::{Lang, Tr};
use crate::session;
use crate::text::{Piece, pieces};
use crate::{Desk, MOUNT};

mod checkin;
mod export;
mod versions;

/// The cookie that keeps the language of someone not signed in.
const LANG_COOKIE: &str = "klad_lang";

const CSS: &str = include_str!("../assets/desk.css");

pub(crate) fn routes<B: Backend>(desk: Arc<Desk<B>>) -> Router {
    Router::new()
        .route(MOUNT, get(home::<B>))
        .route("/desk/", get(|| async { Redirect::permanent(MOUNT) }))
        .route("/desk/desk.css", get(css))
        .route(
            "/desk/start/{secret}",
            get(start_page::<B>).post(start::<B>),
        )
        .route("/desk/in/{token}", get(sign_in_page::<B>))
        .route("/desk/in", axum::routing::post(sign_in::<B>))
        .route("/desk/out", axum::routing::post(sign_out::<B>))
        .route("/desk/language", axum::routing::post(language::<B>))
        .route("/desk/articles", get(articles::<B>))
        .route("/desk/articles/{id}", get(article::<B>))
        .route(
            "/desk/articles/{id}/text",
            axum::routing::post(edit_text::<B>),
        )
        .route(
            "/desk/articles/{id}/comment",
            axum::routing::post(comment::<B>),
        )
        .route("/desk/inbox", get(inbox::<B>))
        .route(
            "/desk/threads/{id}/answer",
            axum::routing::post(answer::<B>),
        )
        .route("/desk/threads/{id}/reply", axum::routing::post(reply::<B>))
        .route("/desk/members", get(members::<B>).post(invite::<B>))
        .route("/desk/checkin", get(checkin::checkin::<B>))
        .route(
            "/desk/checkin/done",
            axum::routing::post(checkin::checkin_done::<B>),
        )
        .route("/desk/phase", axum::routing::post(checkin::phase::<B>))
        .route(
            "/desk/letters",
            get(checkin::letters::<B>).post(checkin::letter::<B>),
        )
        .route("/desk/versions", get(versions::versions::<B>))
        .route("/desk/versions/text", get(versions::version_text::<B>))
        .route("/desk/versions/diff", get(versions::version_diff::<B>))
        .route(
            "/desk/versions/name",
            axum::routing::post(versions::name_version::<B>),
        )
        .route("/desk/export", get(export::export_page::<B>))
        .route("/desk/export/{file}", get(export::export::<B>))
        .route("/desk/threads/{id}/hide", axum::routing::post(hide::<B>))
        .route(
            "/desk/threads/{id}/unhide",
            axum::routing::post(unhide::<B>),
        )
        .route("/desk/{*rest}", get(not_found::<B>).post(not_found::<B>))
        .with_state(desk)
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    (now_secs() as i64) * 1000
}

// ---------------------------------------------------------------- context

/// The signed-in member, as every page of theirs needs them.
struct Me {
    /// Where the session is stored.
    sid: String,
    session: StoredSession,
    lang: Lang,
}

/// What the layout shows around every page.
pub(crate) struct Ctx<'a> {
    pub t: Tr<'a>,
    pub title: String,
    /// The nav entry of this page (`home`, `articles`, `inbox`, `members`).
    pub here: &'static str,
    pub user: Option<UserNav>,
    /// The form secret (empty when nobody is signed in).
    pub csrf: String,
}

/// Who is signed in, for the header.
pub(crate) struct UserNav {
    pub name: String,
    pub role: Role,
    pub process_title: String,
}

impl Ctx<'_> {
    /// True when the nav entry `id` is this page.
    pub fn is(&self, id: &str) -> bool {
        self.here == id
    }

    /// True when the signed-in member has `role`.
    pub fn role_is(&self, role: &str) -> bool {
        self.user.as_ref().is_some_and(|u| u.role.as_str() == role)
    }
}

fn lang_cookie(headers: &HeaderMap) -> Option<Lang> {
    session::cookie_named(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v))
}

/// The language of someone not signed in: their choice on this browser,
/// else their browser's, else Dutch.
fn anonymous_lang(headers: &HeaderMap) -> Lang {
    lang_cookie(headers).unwrap_or_else(|| {
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(crate::i18n::from_accept_language)
            .unwrap_or_default()
    })
}

impl<B: Backend> Desk<B> {
    fn secure(&self, headers: &HeaderMap) -> bool {
        self.always_secure || session::over_tls(headers)
    }

    /// The member signed in with this request's cookie, if their session is
    /// still good (not expired, their token not revoked).
    async fn me(&self, headers: &HeaderMap) -> Result<Option<Me>, DeskError> {
        let Some(cookie) = session::cookie(headers) else {
            return Ok(None);
        };
        let sid = session::storage_id(&cookie);
        let Some(stored) = self.backend.load_session(&sid).await? else {
            return Ok(None);
        };
        if stored.expires_at <= now_secs()
            || !self
                .backend
                .still_valid(&stored.member, &stored.process, stored.generation)
        {
            self.backend.delete_session(&sid).await?;
            return Ok(None);
        }
        let lang = Lang::parse(&stored.lang).unwrap_or_default();
        Ok(Some(Me {
            sid,
            session: stored,
            lang,
        }))
    }

    fn ctx(
        &self,
        lang: Lang,
        title: String,
        here: &'static str,
        me: Option<(&Me, &ProcessInfo)>,
    ) -> Ctx<'_> {
        let (user, csrf) = match me {
            Some((me, info)) => (
                info.members.get(&me.session.member).map(|m| UserNav {
                    name: m.name.clone(),
                    role: m.role,
                    process_title: info.title.clone(),
                }),
                me.session.csrf.clone(),
            ),
            None => (None, String::new()),
        };
        Ctx {
            t: self.catalogue.tr(lang),
            title,
            here,
            user,
            csrf,
        }
    }

    /// A page saying what went wrong, in the reader's language.
    fn error_page(&self, lang: Lang, status: StatusCode, sentence: &str) -> Response {
        let t = self.catalogue.tr(lang);
        let heading = match status {
            StatusCode::NOT_FOUND => t.get("error-not-found"),
            StatusCode::FORBIDDEN => t.get("error-refused"),
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => t.get("error-bad-input"),
            _ => t.get("error-failed"),
        };
        let page = ErrorPage {
            ctx: self.ctx(lang, heading.clone(), "", None),
            heading,
            sentence: sentence.to_owned(),
        };
        render(status, &page)
    }

    fn desk_error(&self, lang: Lang, e: &DeskError) -> Response {
        if let DeskError::Core(e) = e {
            return self.error_page(lang, core_status(e), &e.message(lang));
        }
        let status = match e {
            DeskError::Core(_) => StatusCode::INTERNAL_SERVER_ERROR,
            DeskError::Refused(_) => StatusCode::FORBIDDEN,
            DeskError::BadInput(_) => StatusCode::BAD_REQUEST,
            DeskError::NotFound(_) => StatusCode::NOT_FOUND,
            DeskError::Conflict(_) => StatusCode::CONFLICT,
            DeskError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DeskError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.error_page(lang, status, &e.to_string())
    }

    /// Checks a form post: sent by a page of this site, by a signed-in
    /// member, with their session's form secret. `Err` is the refusal page.
    async fn checked_post(&self, headers: &HeaderMap, csrf: &str) -> Result<Me, Response> {
        let lang = anonymous_lang(headers);
        if session::cross_site(headers) {
            let t = self.catalogue.tr(lang);
            return Err(self.error_page(lang, StatusCode::FORBIDDEN, &t.get("refused-cross-site")));
        }
        let me = match self.me(headers).await {
            Ok(Some(me)) => me,
            Ok(None) => {
                let t = self.catalogue.tr(lang);
                return Err(self.error_page(
                    lang,
                    StatusCode::FORBIDDEN,
                    &t.get("refused-not-signed-in"),
                ));
            }
            Err(e) => return Err(self.desk_error(lang, &e)),
        };
        if !session::secrets_equal(csrf, &me.session.csrf) {
            let t = self.catalogue.tr(me.lang);
            return Err(self.error_page(me.lang, StatusCode::FORBIDDEN, &t.get("refused-csrf")));
        }
        Ok(me)
    }

    /// A form post of a signed-in member, checked ([`Self::checked_post`]):
    /// the member and the form, or the page to show instead.
    async fn posted<T: HasCsrf>(
        &self,
        headers: &HeaderMap,
        form: Result<Form<T>, FormRejection>,
    ) -> Result<(Me, T), Response> {
        let form = match form {
            Ok(Form(f)) => f,
            Err(e) => return Err(form_problem(self, anonymous_lang(headers), &e)),
        };
        let me = self.checked_post(headers, form.csrf()).await?;
        Ok((me, form))
    }

    /// The signed-in member and their process's documents, or the page to
    /// show instead (sign in first; the documents could not be read).
    async fn signed_in(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Me, ProcessDocs, ProcessInfo), Response> {
        let lang = anonymous_lang(headers);
        let me = match self.me(headers).await {
            Ok(Some(me)) => me,
            Ok(None) => return Err(Redirect::to(MOUNT).into_response()),
            Err(e) => return Err(self.desk_error(lang, &e)),
        };
        let docs = match self.backend.process_docs(&me.session.process).await {
            Ok(d) => d,
            Err(e) => return Err(self.desk_error(me.lang, &e)),
        };
        let info = match docs.process.info() {
            Ok(i) => i,
            Err(e) => return Err(self.desk_error(me.lang, &DeskError::Internal(e.to_string()))),
        };
        Ok((me, docs, info))
    }
}

/// The HTTP status of a klad-core error.
fn core_status(e: &klad_core::Error) -> StatusCode {
    match e {
        klad_core::Error::NotAllowed(_) => StatusCode::FORBIDDEN,
        klad_core::Error::NotFound(_) => StatusCode::NOT_FOUND,
        klad_core::Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            r.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            r.headers_mut()
                .insert("referrer-policy", HeaderValue::from_static("same-origin"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a desk page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><html lang=\"nl\"><title>Klad</title><main><h1>Er ging iets mis / Something went wrong</h1><p>De pagina kon niet worden gemaakt; probeer het opnieuw. The page could not be made; try again.</p></main></html>".to_owned()),
            )
                .into_response()
        }
    }
}

/// A form that carries the session's form secret.
pub(crate) trait HasCsrf: serde::de::DeserializeOwned + Send {
    /// The secret as posted.
    fn csrf(&self) -> &str;
}

/// Forms whose secret is their `csrf` field.
macro_rules! has_csrf {
    ($($form:ty),* $(,)?) => {
        $(impl HasCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}
pub(crate) use has_csrf;

fn form_problem<B: Backend>(desk: &Desk<B>, lang: Lang, e: &FormRejection) -> Response {
    let t = desk.catalogue.tr(lang);
    desk.error_page(
        lang,
        StatusCode::BAD_REQUEST,
        &t.s("refused-form", "detail", e.body_text()),
    )
}

// ---------------------------------------------------------------- templates

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: Ctx<'a>,
    heading: String,
    sentence: String,
}

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage<'a> {
    ctx: Ctx<'a>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    ctx: Ctx<'a>,
    title: String,
    phase: Phase,
    role: Role,
    articles: usize,
    open_threads: usize,
}

#[derive(Template)]
#[template(path = "start.html")]
struct StartPage<'a> {
    ctx: Ctx<'a>,
    secret: String,
    title: String,
    facilitator: String,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "invited.html")]
struct InvitedPage<'a> {
    ctx: Ctx<'a>,
    heading: String,
    intro: String,
    invitation: NewInvitation,
    link: String,
    qr_svg: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    ctx: Ctx<'a>,
    token: String,
}

#[derive(Template)]
#[template(path = "invitation_problem.html")]
struct InvitationProblemPage<'a> {
    ctx: Ctx<'a>,
    heading: String,
    sentence: String,
}

/// A thread as the pages list it.
struct ThreadItem {
    number: usize,
    thread: ThreadView,
    article_label: String,
    article_id: String,
    /// The quoted passage, and whether it is gone from the text.
    quote: String,
    orphaned: bool,
}

impl ThreadItem {
    fn is_suggestion(&self) -> bool {
        self.thread.kind == ThreadKind::Suggestion
    }

    /// The catalogue id of the thread's status (also its CSS class).
    fn status_key(&self) -> &'static str {
        match self.thread.status {
            ThreadStatus::Open => "status-open",
            ThreadStatus::Answered => "status-answered",
            ThreadStatus::Resolved => "status-resolved",
            ThreadStatus::Hidden => "status-hidden",
        }
    }

    /// The catalogue id of an answer's verdict.
    fn answer_key(&self, answer: &AnswerView) -> &'static str {
        answer_status_key(answer.status)
    }
}

/// The catalogue id of a verdict.
fn answer_status_key(status: AnswerStatus) -> &'static str {
    match status {
        AnswerStatus::Adopted => "answer-adopted",
        AnswerStatus::PartlyAdopted => "answer-partly-adopted",
        AnswerStatus::NotAdopted => "answer-not-adopted",
        AnswerStatus::Noted => "answer-noted",
    }
}

#[derive(Template)]
#[template(path = "articles.html")]
struct ArticlesPage<'a> {
    ctx: Ctx<'a>,
    articles: Vec<(ArticleView, usize)>,
}

#[derive(Template)]
#[template(path = "article.html")]
struct ArticlePage<'a> {
    ctx: Ctx<'a>,
    article: ArticleView,
    pieces: Vec<Piece>,
    threads: Vec<ThreadItem>,
    /// What the member may do here now (the forms the page offers; klad-core
    /// decides again when they are sent).
    may_answer: bool,
    may_reply: bool,
    may_edit: bool,
    may_hide: bool,
    may_comment: bool,
    may_suggest: bool,
    /// What the comment form held when it was refused, and why.
    comment_problem: Option<String>,
    comment_passage: String,
    comment_text: String,
    comment_wording: String,
    /// The text was just stored.
    edited: bool,
    /// The thread whose answer or reply was just stored.
    saved: Option<String>,
    statuses: Vec<(&'static str, &'static str)>,
}

impl ArticlePage<'_> {
    /// The id of the thread numbered `n` on this page (its anchor).
    fn thread_id(&self, n: &usize) -> String {
        self.threads
            .iter()
            .find(|t| t.number == *n)
            .map(|t| t.thread.id.to_string())
            .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage<'a> {
    ctx: Ctx<'a>,
    waiting: Vec<ThreadItem>,
}

/// A member as the members page lists them.
struct MemberItem {
    name: String,
    role: Role,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage<'a> {
    ctx: Ctx<'a>,
    members: Vec<MemberItem>,
    roles: Vec<Role>,
    problem: Option<String>,
    name: String,
}

// ---------------------------------------------------------------- handlers

async fn not_found<B: Backend>(State(desk): State<Arc<Desk<B>>>, headers: HeaderMap) -> Response {
    let lang = anonymous_lang(&headers);
    let t = desk.catalogue.tr(lang);
    desk.error_page(lang, StatusCode::NOT_FOUND, &t.get("not-found-sentence"))
}

async fn home<B: Backend>(State(desk): State<Arc<Desk<B>>>, headers: HeaderMap) -> Response {
    let lang = anonymous_lang(&headers);
    match desk.me(&headers).await {
        Ok(None) => {
            let t = desk.catalogue.tr(lang);
            let page = WelcomePage {
                ctx: desk.ctx(lang, t.get("welcome-title"), "home", None),
            };
            return render(StatusCode::OK, &page);
        }
        Err(e) => return desk.desk_error(lang, &e),
        Ok(Some(_)) => {}
    }
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(member) = info.members.get(&me.session.member) else {
        return desk.error_page(
            me.lang,
            StatusCode::FORBIDDEN,
            &desk.catalogue.tr(me.lang).get("refused-not-signed-in"),
        );
    };
    let open_threads = views::threads(&docs, None, now_ms())
        .map(|t| t.iter().filter(|t| t.status == ThreadStatus::Open).count())
        .unwrap_or(0);
    let page = HomePage {
        ctx: desk.ctx(me.lang, info.title.clone(), "home", Some((&me, &info))),
        title: info.title.clone(),
        phase: info.phase,
        role: member.role,
        articles: views::articles(&docs).len(),
        open_threads,
    };
    render(StatusCode::OK, &page)
}

// -- first run

async fn start_page<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = anonymous_lang(&headers);
    if !desk.setup_open(&secret) {
        let t = desk.catalogue.tr(lang);
        return desk.error_page(lang, StatusCode::NOT_FOUND, &t.get("start-used"));
    }
    let t = desk.catalogue.tr(lang);
    let page = StartPage {
        ctx: desk.ctx(lang, t.get("start-title"), "", None),
        secret,
        title: String::new(),
        facilitator: String::new(),
        problem: None,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct StartForm {
    title: String,
    facilitator: String,
}

impl<B: Backend> Desk<B> {
    fn setup_open(&self, secret: &str) -> bool {
        let held = self.setup_secret.lock().unwrap_or_else(|e| e.into_inner());
        held.as_deref()
            .is_some_and(|s| session::secrets_equal(s, secret))
            && self.backend.is_empty()
    }
}

async fn start<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, FormRejection>,
) -> Response {
    let lang = anonymous_lang(&headers);
    let t = desk.catalogue.tr(lang);
    if session::cross_site(&headers) {
        return desk.error_page(lang, StatusCode::FORBIDDEN, &t.get("refused-cross-site"));
    }
    if !desk.setup_open(&secret) {
        return desk.error_page(lang, StatusCode::NOT_FOUND, &t.get("start-used"));
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => return form_problem(&desk, lang, &e),
    };
    let again = |problem: String| {
        let page = StartPage {
            ctx: desk.ctx(lang, t.get("start-title"), "", None),
            secret: secret.clone(),
            title: form.title.clone(),
            facilitator: form.facilitator.clone(),
            problem: Some(problem),
        };
        render(StatusCode::BAD_REQUEST, &page)
    };
    if form.title.trim().is_empty() {
        return again(t.get("start-need-title"));
    }
    if form.facilitator.trim().is_empty() {
        return again(t.get("start-need-facilitator"));
    }
    let (process, invitation) = match desk
        .backend
        .create_process(form.title.trim(), form.facilitator.trim())
        .await
    {
        Ok(x) => x,
        Err(DeskError::BadInput(m)) => return again(m),
        Err(e) => return desk.desk_error(lang, &e),
    };
    // The link has done its work: nobody opens a second first process with it.
    *desk.setup_secret.lock().unwrap_or_else(|e| e.into_inner()) = None;
    tracing::info!(process = %process.process, "the first process was opened from the desk's first-run page");
    let heading = t.s("started-title", "title", &process.title);
    let intro = t.s("started-intro", "name", &invitation.name);
    invited_page(&desk, &headers, lang, heading, intro, invitation, None)
}

fn invited_page<B: Backend>(
    desk: &Desk<B>,
    headers: &HeaderMap,
    lang: Lang,
    heading: String,
    intro: String,
    invitation: NewInvitation,
    me: Option<(&Me, &ProcessInfo)>,
) -> Response {
    let link = format!("{}/desk/in/{}", origin(headers), invitation.token);
    let qr_svg = match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(e) => {
            tracing::warn!(error = %e, "an invitation link does not fit in a QR code");
            String::new()
        }
    };
    // The SVG's own XML declaration is not allowed inside HTML.
    let qr_svg = match qr_svg.find("<svg") {
        Some(i) => qr_svg[i..].to_owned(),
        None => qr_svg,
    };
    let t = desk.catalogue.tr(lang);
    let expires = t.s("expires-on", "date", date_of(invitation.expires_at));
    let page = InvitedPage {
        ctx: desk.ctx(lang, heading.clone(), "members", me),
        heading,
        intro,
        invitation,
        link,
        qr_svg,
        expires,
    };
    render(StatusCode::OK, &page)
}

/// `http://host` of the request, as the person's browser reached the desk.
fn origin(headers: &HeaderMap) -> String {
    let scheme = if session::over_tls(headers) {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:7700");
    format!("{scheme}://{host}")
}

/// A date (UTC) as `2026-11-30`.
fn date_of(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// -- signing in and out

async fn sign_in_page<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = anonymous_lang(&headers);
    let t = desk.catalogue.tr(lang);
    // Opening the link only shows a button: link previews and scanners that
    // fetch it do not sign anyone in or use anything up.
    match desk.backend.check_invitation(&token) {
        Ok(_) => {
            let page = SignInPage {
                ctx: desk.ctx(lang, t.get("sign-in-title"), "", None),
                token,
            };
            render(StatusCode::OK, &page)
        }
        Err(problem) => invitation_problem(&desk, lang, problem),
    }
}

fn invitation_problem<B: Backend>(
    desk: &Desk<B>,
    lang: Lang,
    problem: InvitationProblem,
) -> Response {
    let t = desk.catalogue.tr(lang);
    let (heading, sentence) = match problem {
        InvitationProblem::Expired => (
            t.get("invitation-expired-title"),
            t.get("invitation-expired"),
        ),
        InvitationProblem::Revoked => (
            t.get("invitation-revoked-title"),
            t.get("invitation-revoked"),
        ),
        InvitationProblem::Invalid => (
            t.get("invitation-invalid-title"),
            t.get("invitation-invalid"),
        ),
        InvitationProblem::Unknown => (
            t.get("invitation-unknown-title"),
            t.get("invitation-unknown"),
        ),
    };
    let page = InvitationProblemPage {
        ctx: desk.ctx(lang, heading.clone(), "", None),
        heading,
        sentence,
    };
    render(StatusCode::FORBIDDEN, &page)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

async fn sign_in<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let lang = anonymous_lang(&headers);
    let t = desk.catalogue.tr(lang);
    // No session yet, so no form secret: the token is the secret, and a
    // post another site sends is refused by its origin.
    if session::cross_site(&headers) {
        return desk.error_page(lang, StatusCode::FORBIDDEN, &t.get("refused-cross-site"));
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => return form_problem(&desk, lang, &e),
    };
    let invited = match desk.backend.check_invitation(form.token.trim()) {
        Ok(i) => i,
        Err(problem) => return invitation_problem(&desk, lang, problem),
    };
    let cookie = session::random_secret();
    let stored = StoredSession {
        member: invited.member.clone(),
        process: invited.process.clone(),
        generation: invited.generation,
        expires_at: invited.expires_at,
        csrf: session::random_secret(),
        lang: lang.as_str().to_owned(),
    };
    if let Err(e) = desk
        .backend
        .save_session(&session::storage_id(&cookie), &stored)
        .await
    {
        return desk.desk_error(lang, &e);
    }
    tracing::info!(member = %invited.member, process = %invited.process, "signed in at the desk");
    let max_age = invited.expires_at.saturating_sub(now_secs());
    let mut r = Redirect::to(MOUNT).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        &cookie,
        max_age,
        desk.secure(&headers),
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (me, _) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = desk.backend.delete_session(&me.sid).await {
        return desk.desk_error(me.lang, &e);
    }
    tracing::info!(member = %me.session.member, "signed out of the desk");
    let mut r = Redirect::to(MOUNT).into_response();
    let secure = desk.secure(&headers);
    // The desk goes on speaking their language on this browser.
    for cookie in [
        session::clear_cookie(secure),
        lang_cookie_value(me.lang, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The `Set-Cookie` value that keeps `lang` for someone not signed in.
fn lang_cookie_value(lang: Lang, secure: bool) -> String {
    format!(
        "{LANG_COOKIE}={}; Path=/desk; SameSite=Strict; Max-Age=31536000{}",
        lang.as_str(),
        if secure { "; Secure" } else { "" }
    )
}

#[derive(Deserialize)]
struct LanguageForm {
    lang: String,
    #[serde(default)]
    csrf: String,
}

async fn language<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<LanguageForm>, FormRejection>,
) -> Response {
    let lang = anonymous_lang(&headers);
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => return form_problem(&desk, lang, &e),
    };
    let Some(chosen) = Lang::parse(&form.lang) else {
        let t = desk.catalogue.tr(lang);
        return desk.error_page(lang, StatusCode::BAD_REQUEST, &t.get("refused-language"));
    };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/desk").map(|i| r[i..].to_owned()))
        .unwrap_or_else(|| MOUNT.to_owned());
    if session::cookie(&headers).is_some() {
        // Signed in: the choice is the member's, kept with their session.
        let me = match desk.checked_post(&headers, &form.csrf).await {
            Ok(me) => me,
            Err(r) => return r,
        };
        let mut stored = me.session.clone();
        stored.lang = chosen.as_str().to_owned();
        if let Err(e) = desk.backend.save_session(&me.sid, &stored).await {
            return desk.desk_error(me.lang, &e);
        }
        return Redirect::to(&back).into_response();
    }
    if session::cross_site(&headers) {
        let t = desk.catalogue.tr(lang);
        return desk.error_page(lang, StatusCode::FORBIDDEN, &t.get("refused-cross-site"));
    }
    let mut r = Redirect::to(&back).into_response();
    if let Ok(v) = HeaderValue::from_str(&lang_cookie_value(chosen, desk.secure(&headers))) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// -- reading

fn thread_items(articles: &[ArticleView], threads: Vec<ThreadView>) -> Vec<ThreadItem> {
    threads
        .into_iter()
        .enumerate()
        .map(|(i, thread)| {
            let article = articles.iter().find(|a| a.id == thread.article);
            let (quote, orphaned) = match &thread.anchor {
                AnchorView::Live { text, .. } => (text.clone(), false),
                AnchorView::Orphaned { quote } | AnchorView::Pending { quote } => {
                    (quote.clone(), true)
                }
            };
            ThreadItem {
                number: i + 1,
                article_label: article.map(|a| a.label.clone()).unwrap_or_default(),
                article_id: thread.article.to_string(),
                thread,
                quote,
                orphaned,
            }
        })
        .collect()
}

async fn articles<B: Backend>(State(desk): State<Arc<Desk<B>>>, headers: HeaderMap) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let threads = match views::threads(&docs, None, now_ms()) {
        Ok(t) => t,
        Err(e) => return desk.desk_error(me.lang, &DeskError::Internal(e.to_string())),
    };
    let articles = views::articles(&docs)
        .into_iter()
        .map(|a| {
            let n = threads.iter().filter(|t| t.article == a.id).count();
            (a, n)
        })
        .collect();
    let t = desk.catalogue.tr(me.lang);
    let page = ArticlesPage {
        ctx: desk.ctx(
            me.lang,
            t.get("articles-title"),
            "articles",
            Some((&me, &info)),
        ),
        articles,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct ArticleQuery {
    saved: Option<String>,
    edited: Option<String>,
    /// Why the comment form was refused (shown above it).
    problem: Option<String>,
}

async fn article<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<ArticleQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let all = views::articles(&docs);
    let Some(article) = all.iter().find(|a| a.id.as_str() == id).cloned() else {
        return desk.error_page(me.lang, StatusCode::NOT_FOUND, &t.get("article-missing"));
    };
    let id = ArticleId(id);
    let threads = match views::threads(&docs, Some(&id), now_ms()) {
        Ok(t) => t,
        Err(e) => return desk.desk_error(me.lang, &DeskError::Internal(e.to_string())),
    };
    let threads = thread_items(&all, threads);
    let passages: Vec<(usize, usize, usize)> = threads
        .iter()
        .filter_map(|item| match &item.thread.anchor {
            AnchorView::Live { start, end, .. } => Some((*start, *end, item.number)),
            _ => None,
        })
        .collect();
    let role = info.members.get(&me.session.member).map(|m| m.role);
    let may_do = |action: Action| role.is_some_and(|r| may(r, info.phase, action).is_ok());
    let query = query.ok().map(|q| q.0);
    let edited = query.as_ref().is_some_and(|q| q.edited.is_some());
    let comment_problem = query.as_ref().and_then(|q| q.problem.clone());
    let saved = query
        .and_then(|q| q.saved)
        .filter(|s| threads.iter().any(|t| t.thread.id.as_str() == s));
    let page = ArticlePage {
        ctx: desk.ctx(
            me.lang,
            article.label.clone(),
            "articles",
            Some((&me, &info)),
        ),
        pieces: pieces(&article.body, &passages),
        article,
        threads,
        may_answer: may_do(Action::Answer),
        may_reply: may_do(Action::Reply),
        may_edit: may_do(Action::EditText),
        may_hide: may_do(Action::Hide),
        may_comment: may_do(Action::Comment),
        may_suggest: may_do(Action::Suggest),
        comment_problem,
        comment_passage: String::new(),
        comment_text: String::new(),
        comment_wording: String::new(),
        edited,
        saved,
        statuses: AnswerStatus::ALL
            .iter()
            .map(|s| (s.as_str(), answer_status_key(*s)))
            .collect(),
    };
    render(StatusCode::OK, &page)
}

async fn inbox<B: Backend>(State(desk): State<Arc<Desk<B>>>, headers: HeaderMap) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let threads = match views::threads(&docs, None, now_ms()) {
        Ok(t) => t,
        Err(e) => return desk.desk_error(me.lang, &DeskError::Internal(e.to_string())),
    };
    let mut waiting: Vec<ThreadView> = threads
        .into_iter()
        .filter(|t| t.status == ThreadStatus::Open)
        .collect();
    // Oldest first: whoever has waited longest is answered first.
    waiting.sort_by_key(|t| (t.created_at, t.id.to_string()));
    let articles = views::articles(&docs);
    let t = desk.catalogue.tr(me.lang);
    let page = InboxPage {
        ctx: desk.ctx(me.lang, t.get("inbox-title"), "inbox", Some((&me, &info))),
        waiting: thread_items(&articles, waiting),
    };
    render(StatusCode::OK, &page)
}

// -- writing

#[derive(Deserialize)]
struct AnswerForm {
    csrf: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct ReplyForm {
    csrf: String,
    #[serde(default)]
    text: String,
}

/// Writes `act` on `thread` as the signed-in member; once it is stored, back
/// to the thread with a note that it was saved.
async fn write_act<B: Backend>(desk: &Desk<B>, me: &Me, thread: &str, act: Act) -> Response {
    let docs = match desk.backend.process_docs(&me.session.process).await {
        Ok(d) => d,
        Err(e) => return desk.desk_error(me.lang, &e),
    };
    let t = desk.catalogue.tr(me.lang);
    let Some(article) = docs
        .contribution(&ContributionId(thread.to_owned()))
        .and_then(|_| views::threads(&docs, None, now_ms()).ok())
        .and_then(|all| all.into_iter().find(|t| t.id.as_str() == thread))
        .map(|t| t.article)
    else {
        return desk.error_page(me.lang, StatusCode::NOT_FOUND, &t.get("thread-missing"));
    };
    match desk
        .backend
        .act(&me.session.process, &me.session.member, act)
        .await
    {
        Ok(()) => Redirect::to(&format!(
            "/desk/articles/{article}?saved={thread}#thread-{thread}"
        ))
        .into_response(),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

#[derive(Deserialize)]
struct TextForm {
    csrf: String,
    #[serde(default)]
    body: String,
}

async fn edit_text<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(article): Path<String>,
    headers: HeaderMap,
    form: Result<Form<TextForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Browsers send line ends as CRLF; the text keeps LF.
    let body = form.body.replace("\r\n", "\n");
    let act = Act::EditBody {
        article: ArticleId(article.clone()),
        body,
    };
    match desk
        .backend
        .act(&me.session.process, &me.session.member, act)
        .await
    {
        Ok(()) => Redirect::to(&format!("/desk/articles/{article}?edited=1")).into_response(),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

#[derive(Deserialize)]
struct ModerationForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn moderate<B: Backend>(
    desk: &Desk<B>,
    thread: String,
    headers: &HeaderMap,
    form: Result<Form<ModerationForm>, FormRejection>,
    hide: bool,
) -> Response {
    let (me, form) = match desk.posted(headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let target = ContributionId(thread.clone());
    let act = if hide {
        Act::Hide {
            target,
            reason: form.reason,
        }
    } else {
        Act::Unhide {
            target,
            reason: form.reason,
        }
    };
    write_act(desk, &me, &thread, act).await
}

async fn hide<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ModerationForm>, FormRejection>,
) -> Response {
    moderate(&desk, thread, &headers, form, true).await
}

async fn unhide<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ModerationForm>, FormRejection>,
) -> Response {
    moderate(&desk, thread, &headers, form, false).await
}

#[derive(Deserialize)]
struct CommentForm {
    csrf: String,
    #[serde(default)]
    passage: String,
    #[serde(default)]
    text: String,
    /// `suggestion` (the button that proposes `wording`) or `comment`.
    #[serde(default)]
    kind: String,
    /// For a suggestion: the wording proposed for the passage.
    #[serde(default)]
    wording: String,
}

/// A comment or a suggestion on words of the article, which the person
/// copies from the text (no script is needed to point at them).
async fn comment<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(article): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CommentForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (me, docs, _) = match desk.signed_in(&headers).await {
        Ok((_, docs, info)) => (me, docs, info),
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let Some(view) = views::articles(&docs)
        .into_iter()
        .find(|a| a.id.as_str() == article)
    else {
        return desk.error_page(me.lang, StatusCode::NOT_FOUND, &t.get("article-missing"));
    };
    let refused = |sentence: String| {
        let query = format!("/desk/articles/{article}?problem={}", urlencode(&sentence));
        Redirect::to(&query).into_response()
    };
    let Some((start, end)) = checkin::find_passage(&view.body, &form.passage) else {
        return refused(t.get("letter-passage-missing"));
    };
    let act = match form.kind.as_str() {
        "suggestion" => Act::Suggest {
            article: view.id.clone(),
            start,
            end,
            replacement: form.wording,
            text: form.text,
        },
        _ => Act::Comment {
            article: view.id.clone(),
            start,
            end,
            text: form.text,
        },
    };
    match desk
        .backend
        .act(&me.session.process, &me.session.member, act)
        .await
    {
        Ok(()) => Redirect::to(&format!("/desk/articles/{article}?edited=1")).into_response(),
        Err(DeskError::Core(e)) if matches!(e, klad_core::Error::InvalidInput(_)) => {
            refused(e.message(me.lang))
        }
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

/// `text` with everything but unreserved characters percent-encoded.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn answer<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let Some(status) = AnswerStatus::parse(form.status.trim()) else {
        return desk.error_page(
            me.lang,
            StatusCode::BAD_REQUEST,
            &t.get("answer-need-status"),
        );
    };
    let act = Act::Answer {
        thread: ContributionId(thread.clone()),
        status,
        reason: form.reason,
    };
    write_act(&desk, &me, &thread, act).await
}

async fn reply<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReplyForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let act = Act::Reply {
        thread: ContributionId(thread.clone()),
        text: form.text,
    };
    write_act(&desk, &me, &thread, act).await
}

// -- members

fn member_items(info: &ProcessInfo) -> Vec<MemberItem> {
    let mut members: Vec<MemberItem> = info
        .members
        .values()
        .map(|m| MemberItem {
            name: m.name.clone(),
            role: m.role,
        })
        .collect();
    members.sort_by(|a, b| (a.role.as_str(), &a.name).cmp(&(b.role.as_str(), &b.name)));
    members
}

async fn members<B: Backend>(State(desk): State<Arc<Desk<B>>>, headers: HeaderMap) -> Response {
    let (me, _docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let page = MembersPage {
        ctx: desk.ctx(
            me.lang,
            t.get("members-title"),
            "members",
            Some((&me, &info)),
        ),
        members: member_items(&info),
        roles: Role::ALL.to_vec(),
        problem: None,
        name: String::new(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    name: String,
    role: String,
}

async fn invite<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<InviteForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (me, _docs, info) = match desk.signed_in(&headers).await {
        Ok((_, docs, info)) => (me, docs, info),
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let again = |status: StatusCode, problem: String| {
        let page = MembersPage {
            ctx: desk.ctx(
                me.lang,
                t.get("members-title"),
                "members",
                Some((&me, &info)),
            ),
            members: member_items(&info),
            roles: Role::ALL.to_vec(),
            problem: Some(problem),
            name: form.name.clone(),
        };
        render(status, &page)
    };
    let Some(role) = Role::parse(form.role.trim()) else {
        return again(StatusCode::BAD_REQUEST, t.get("invite-bad-role"));
    };
    if form.name.trim().is_empty() {
        return again(StatusCode::BAD_REQUEST, t.get("invite-need-name"));
    }
    match desk
        .backend
        .invite(
            &me.session.process,
            &me.session.member,
            form.name.trim(),
            role,
        )
        .await
    {
        Ok(invitation) => {
            let heading = t.s("invited-title", "name", &invitation.name);
            let intro = t.s("invited-intro", "role", t.role(&invitation.role));
            invited_page(
                &desk,
                &headers,
                me.lang,
                heading,
                intro,
                invitation,
                Some((&me, &info)),
            )
        }
        Err(DeskError::Refused(m)) => again(StatusCode::FORBIDDEN, m),
        Err(DeskError::BadInput(m) | DeskError::Conflict(m)) => again(StatusCode::BAD_REQUEST, m),
        Err(DeskError::Core(e)) => again(core_status(&e), e.message(me.lang)),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

has_csrf!(
    CsrfForm,
    InviteForm,
    AnswerForm,
    ReplyForm,
    TextForm,
    ModerationForm,
    CommentForm,
);

#[cfg(test)]
mod tests {
    use super::date_of;

    #[test]
    fn dates_are_civil_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_796_083_200), "2026-12-01");
    }
}
