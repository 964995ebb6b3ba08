//! Versions: the text as it was at the end of any day it changed, or at a
//! version a facilitator named ("Concept voor inspraak"); a word-level
//! comparison of two versions; and naming the current one (facilitators).
//!
//! A version is named in a query as `now`, `named:<id>` or `day:<date>` (the
//! text at the end of that day, UTC, by the writers' clocks).

use std::collections::BTreeSet;

use klad_core::{DiffSpan, Version, article_diff, text_moments};

use super::*;

/// A version someone can pick.
pub(super) struct Choice {
    pub spec: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "versions.html")]
pub(super) struct VersionsPage<'a> {
    pub ctx: Ctx<'a>,
    pub named: Vec<(Choice, String)>,
    pub choices: Vec<Choice>,
    pub may_name: bool,
    pub saved: bool,
}

#[derive(Template)]
#[template(path = "version_text.html")]
pub(super) struct VersionTextPage<'a> {
    pub ctx: Ctx<'a>,
    pub label: String,
    pub articles: Vec<ArticleView>,
}

/// One article's comparison.
pub(super) struct ArticleComparison {
    pub label: String,
    pub heading: Vec<DiffSpan>,
    pub body: Vec<DiffSpan>,
    pub changed: bool,
}

#[derive(Template)]
#[template(path = "version_diff.html")]
pub(super) struct VersionDiffPage<'a> {
    pub ctx: Ctx<'a>,
    pub from: String,
    pub to: String,
    pub articles: Vec<ArticleComparison>,
}

/// Milliseconds at the end of `date` (`YYYY-MM-DD`, UTC).
fn end_of_day_ms(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days since the epoch of a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days + 1) * 86_400_000 - 1)
}

/// The version a spec names, and how to call it.
fn resolve(docs: &ProcessDocs, t: &Tr<'_>, spec: &str) -> Result<(Version, String), String> {
    if spec == "now" {
        return Ok((docs.version(), t.get("versions-now")));
    }
    if let Some(id) = spec.strip_prefix("named:") {
        return docs
            .process
            .named_version(id)
            .map(|v| (v.version, v.name))
            .map_err(|e| e.message(t.lang()));
    }
    if let Some(day) = spec.strip_prefix("day:")
        && let Some(ms) = end_of_day_ms(day)
    {
        return Ok((
            docs.version_at_time(ms),
            t.s("versions-end-of-day", "date", day),
        ));
    }
    Err(t.get("versions-bad-spec"))
}

/// The days the text changed, newest first, and the named versions.
fn choices(docs: &ProcessDocs, t: &Tr<'_>) -> Vec<Choice> {
    let mut out = vec![Choice {
        spec: "now".into(),
        label: t.get("versions-now"),
    }];
    for v in docs.process.named_versions() {
        out.push(Choice {
            spec: format!("named:{}", v.id),
            label: v.name,
        });
    }
    let days: BTreeSet<String> = text_moments(docs)
        .unwrap_or_default()
        .iter()
        .map(|m| date_ms(m.time_ms))
        .collect();
    for day in days.into_iter().rev() {
        out.push(Choice {
            label: t.s("versions-end-of-day", "date", &day),
            spec: format!("day:{day}"),
        });
    }
    out
}

fn date_ms(ms: i64) -> String {
    date_of((ms.max(0) / 1000) as u64)
}

pub(super) async fn versions<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    query: Result<axum::extract::Query<ArticleQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let named = docs
        .process
        .named_versions()
        .into_iter()
        .map(|v| {
            let by =
                v.by.as_ref()
                    .and_then(|m| info.members.get(m))
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
            (
                Choice {
                    spec: format!("named:{}", v.id),
                    label: v.name,
                },
                t.fill(
                    "versions-named-by",
                    &[("date", date_ms(v.at_ms).as_str()), ("name", by.as_str())],
                    None,
                ),
            )
        })
        .collect();
    let role = info.members.get(&me.session.member).map(|m| m.role);
    let page = VersionsPage {
        ctx: desk.ctx(
            me.lang,
            t.get("versions-title"),
            "versions",
            Some((&me, &info)),
        ),
        named,
        choices: choices(&docs, &t),
        may_name: role.is_some_and(|r| may(r, info.phase, Action::NameVersion).is_ok()),
        saved: query.ok().is_some_and(|q| q.0.saved.is_some()),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub(super) struct TextQuery {
    #[serde(default)]
    at: String,
}

pub(super) async fn version_text<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    query: Result<axum::extract::Query<TextQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let spec = query.map(|q| q.0.at).unwrap_or_default();
    let (version, label) = match resolve(&docs, &t, &spec) {
        Ok(x) => x,
        Err(sentence) => return desk.error_page(me.lang, StatusCode::BAD_REQUEST, &sentence),
    };
    let past = match docs.at(&version) {
        Ok(p) => p,
        Err(e) => return desk.desk_error(me.lang, &DeskError::Core(e)),
    };
    let page = VersionTextPage {
        ctx: desk.ctx(me.lang, label.clone(), "versions", Some((&me, &info))),
        label,
        articles: views::articles(&past),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub(super) struct DiffQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub(super) async fn version_diff<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    query: Result<axum::extract::Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (me, docs, info) = match desk.signed_in(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = desk.catalogue.tr(me.lang);
    let (from_spec, to_spec) = match query {
        Ok(q) => (q.0.from, q.0.to),
        Err(_) => (String::new(), String::new()),
    };
    let (from, to) = match (resolve(&docs, &t, &from_spec), resolve(&docs, &t, &to_spec)) {
        (Ok(f), Ok(to)) => (f, to),
        (Err(s), _) | (_, Err(s)) => return desk.error_page(me.lang, StatusCode::BAD_REQUEST, &s),
    };
    // Every article of either version, in the order of the newer one, then
    // those only the older one had.
    let (old, new) = match (docs.at(&from.0), docs.at(&to.0)) {
        (Ok(o), Ok(n)) => (views::articles(&o), views::articles(&n)),
        (Err(e), _) | (_, Err(e)) => return desk.desk_error(me.lang, &DeskError::Core(e)),
    };
    let mut ids: Vec<(ArticleId, String)> = new
        .iter()
        .map(|a| (a.id.clone(), a.label.clone()))
        .collect();
    for a in &old {
        if !ids.iter().any(|(id, _)| *id == a.id) {
            ids.push((
                a.id.clone(),
                t.s("versions-removed-article", "label", &a.label),
            ));
        }
    }
    let mut articles = Vec::new();
    for (id, label) in ids {
        match article_diff(&docs.text, &id, &from.0.text, &to.0.text) {
            Ok(d) => {
                let changed = d
                    .heading
                    .iter()
                    .chain(&d.body)
                    .any(|s| !matches!(s, DiffSpan::Same(_)));
                articles.push(ArticleComparison {
                    label,
                    heading: d.heading,
                    body: d.body,
                    changed,
                });
            }
            Err(e) => return desk.desk_error(me.lang, &DeskError::Core(e)),
        }
    }
    let page = VersionDiffPage {
        ctx: desk.ctx(
            me.lang,
            t.get("versions-diff-title"),
            "versions",
            Some((&me, &info)),
        ),
        from: from.1,
        to: to.1,
        articles,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub(super) struct NameForm {
    csrf: String,
    #[serde(default)]
    name: String,
}

pub(super) async fn name_version<B: Backend>(
    State(desk): State<Arc<Desk<B>>>,
    headers: HeaderMap,
    form: Result<Form<NameForm>, FormRejection>,
) -> Response {
    let (me, form) = match desk.posted(&headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match desk
        .backend
        .name_version(&me.session.process, &me.session.member, &form.name)
        .await
    {
        Ok(()) => Redirect::to("/desk/versions?saved=1").into_response(),
        Err(e) => desk.desk_error(me.lang, &e),
    }
}

has_csrf!(NameForm);

#[cfg(test)]
mod tests {
    use super::end_of_day_ms;

    #[test]
    fn days_end_at_their_last_millisecond() {
        assert_eq!(end_of_day_ms("1970-01-01"), Some(86_399_999));
        assert_eq!(end_of_day_ms("2026-12-01"), Some(1_796_169_599_999));
        assert_eq!(end_of_day_ms("2000-02-29"), Some(951_868_799_999));
        assert_eq!(end_of_day_ms("2026-13-01"), None);
        assert_eq!(end_of_day_ms("gisteren"), None);
    }
}
