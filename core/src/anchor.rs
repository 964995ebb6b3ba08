//! Anchors: how a comment or suggestion stays on its passage.
//!
//! An anchor holds two Automerge cursors, on the first and on the last
//! character of the passage, plus the quote. The passage is every character
//! that sits, in the text's sequence order, from the first to the last of them:
//! text inserted inside the passage becomes part of it; text inserted before
//! its first or after its last character stays outside. A cursor on a deleted
//! character resolves to where that character would be, so deleting the edges
//! shrinks the passage. When every character of the passage is deleted (and
//! nothing was typed inside it meanwhile), the anchor is *orphaned* and views
//! show the original quote instead.

use automerge::{Cursor, ReadDoc};
use serde::{Deserialize, Serialize};

use crate::contributions::StoredAnchor;
use crate::error::{Error, Result};
use crate::ids::ArticleId;
use crate::reason::Reason;
use crate::text::TextDoc;

/// Where an anchor points now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AnchorView {
    /// The passage is in the text at characters `start..end` of the body.
    Live {
        /// First character (inclusive).
        start: usize,
        /// End (exclusive).
        end: usize,
        /// The passage as it reads now.
        text: String,
        /// The passage as it read when the contribution was written.
        quote: String,
    },
    /// The whole passage was deleted (or its article removed); only the quote remains.
    Orphaned {
        /// The passage as it read when the contribution was written.
        quote: String,
    },
    /// The edits this anchor refers to have not arrived on this device yet.
    Pending {
        /// The passage as it read when the contribution was written.
        quote: String,
    },
}

/// Makes an anchor on characters `start..end` of an article's current body.
pub(crate) fn make(
    text: &TextDoc,
    article: &ArticleId,
    start: usize,
    end: usize,
) -> Result<StoredAnchor> {
    text.live_article_obj(article)?;
    let body = text.body_obj(article)?;
    let doc = text_doc(text);
    let len = doc.length(&body);
    if start >= end || end > len {
        return Err(Error::InvalidInput(Reason::PassageOutsideArticle {
            start: start as u64,
            end: end as u64,
            len: len as u64,
        }));
    }
    let s = doc.get_cursor(&body, start, None)?;
    let e = doc.get_cursor(&body, end - 1, None)?;
    let quote: String = doc
        .text(&body)?
        .chars()
        .skip(start)
        .take(end - start)
        .collect();
    Ok(StoredAnchor {
        article: article.clone(),
        start: s.to_bytes(),
        end: e.to_bytes(),
        quote,
    })
}

fn text_doc(text: &TextDoc) -> &automerge::Automerge {
    use crate::document::KladDocument;
    text.automerge()
}

/// Resolves an anchor against the current text.
pub fn resolve(text: &TextDoc, anchor: &StoredAnchor) -> AnchorView {
    resolve_with(text, anchor, &mut Bodies::default())
}

/// Article bodies read while resolving several anchors, so each body is read
/// once per view rather than once per anchor.
#[derive(Default)]
pub struct Bodies(std::collections::HashMap<ArticleId, Vec<char>>);

/// [`resolve`], reading each body once through `bodies`.
pub fn resolve_with(text: &TextDoc, anchor: &StoredAnchor, bodies: &mut Bodies) -> AnchorView {
    let quote = anchor.quote.clone();
    let pending = || AnchorView::Pending {
        quote: quote.clone(),
    };
    if text.article_obj(&anchor.article).is_err() {
        return pending();
    }
    if text.live_article_obj(&anchor.article).is_err() {
        return AnchorView::Orphaned { quote };
    }
    let Ok(body) = text.body_obj(&anchor.article) else {
        return pending();
    };
    let doc = text_doc(text);
    let (Ok(sc), Ok(ec)) = (
        Cursor::try_from(anchor.start.as_slice()),
        Cursor::try_from(anchor.end.as_slice()),
    ) else {
        return AnchorView::Orphaned { quote };
    };
    let (Ok(start), Ok(end_pos)) = (
        doc.get_cursor_position(&body, &sc, None),
        doc.get_cursor_position(&body, &ec, None),
    ) else {
        return pending();
    };
    // A deleted character's cursor resolves to the next surviving character;
    // the end is exclusive, so only a visible last character adds one.
    let len = doc.length(&body);
    let end_visible =
        end_pos < len && doc.get_cursor(&body, end_pos, None).ok().as_ref() == Some(&ec);
    let end = if end_visible { end_pos + 1 } else { end_pos };
    if start >= end {
        return AnchorView::Orphaned { quote };
    }
    let chars = bodies
        .0
        .entry(anchor.article.clone())
        .or_insert_with(|| doc.text(&body).unwrap_or_default().chars().collect());
    let now: String = chars
        .get(start..end.min(chars.len()))
        .unwrap_or_default()
        .iter()
        .collect();
    AnchorView::Live {
        start,
        end,
        text: now,
        quote,
    }
}
