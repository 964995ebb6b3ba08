//! Target `load`: opening a Klad document from bytes (klad-core's
//! `ProcessDoc::load`, `TextDoc::load`, `ContributionsDoc::load` and
//! `load_incremental`), then reading it through the views people see.
//!
//! The first byte chooses the kind (bits 2–3: process, text, contributions)
//! and how the rest becomes bytes (bits 0–1, [`super::bytes::wrap`]: as
//! they are, or the contents of a document, change or bundle chunk with a
//! valid checksum, so Automerge's own decoding is reached).
//!
//! Invariants: nothing panics; a refusal is a sentence; a document that
//! opens saves and opens again with the same heads; the views over it
//! (articles, threads, history, blame) answer or refuse with a sentence —
//! the text and every contributions document are written by members, so a
//! hostile member's document must not take a reader down.

use std::collections::BTreeMap;

use klad_core::{
    ContributionsDoc, KladDocument, MemberId, ProcessDoc, ProcessDocs, TextDoc, views,
};

use super::assert_sentence;
use super::bytes::{self, Input};
use super::hub::world;

fn refused(e: klad_core::Error) {
    assert_sentence(&e.to_string());
}

/// Opens `bytes` as `D` both ways; returns the document when it opens.
fn open<D: KladDocument>(
    bytes: &[u8],
    load: fn(&[u8]) -> klad_core::Result<D>,
    empty: D,
) -> Option<D> {
    let mut incremental = empty;
    if let Err(e) = incremental.load_incremental(bytes) {
        refused(e);
    }
    match load(bytes) {
        Ok(doc) => {
            let saved = doc.save();
            let again = load(&saved).expect("a document that opened opens again once saved");
            assert_eq!(again.heads(), doc.heads(), "saving changed the heads");
            Some(doc)
        }
        Err(e) => {
            refused(e);
            None
        }
    }
}

fn the_process() -> ProcessDoc {
    ProcessDoc::load(&world().process).expect("the process document opens")
}

/// Every view of `docs`; each answers or refuses with a sentence.
fn read(docs: &ProcessDocs) {
    let articles = views::articles(docs);
    for a in &articles {
        if let Err(e) = views::blame(docs, &a.id) {
            refused(e);
        }
    }
    if let Err(e) = views::threads(docs, None, 0) {
        refused(e);
    }
    if let Err(e) = views::history(docs) {
        refused(e);
    }
    if let Err(e) = views::open_suggestions(docs, 0) {
        refused(e);
    }
}

/// The body of the `load` target.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let bytes = bytes::wrap(flags & 3, input.rest());
    match (flags >> 2) % 3 {
        0 => {
            if let Some(process) = open(&bytes, ProcessDoc::load, ProcessDoc::empty()) {
                if let Err(e) = process.info() {
                    refused(e);
                }
                let docs = ProcessDocs {
                    process,
                    text: TextDoc::empty(),
                    contributions: BTreeMap::new(),
                };
                read(&docs);
            }
        }
        1 => {
            if let Some(text) = open(&bytes, TextDoc::load, TextDoc::empty()) {
                for id in text.article_ids() {
                    for field in [text.heading(&id), text.body(&id)] {
                        if let Err(e) = field {
                            refused(e);
                        }
                    }
                }
                let docs = ProcessDocs {
                    process: the_process(),
                    text,
                    contributions: BTreeMap::new(),
                };
                read(&docs);
            }
        }
        _ => {
            if let Some(doc) = open(&bytes, ContributionsDoc::load, ContributionsDoc::empty()) {
                let _ = doc.read_mark();
                let owner = doc.owner().unwrap_or_else(|| MemberId::from("anna"));
                let _ = doc.contributions();
                let docs = ProcessDocs {
                    process: the_process(),
                    text: TextDoc::empty(),
                    contributions: BTreeMap::from([(owner, doc)]),
                };
                read(&docs);
            }
        }
    }
}
