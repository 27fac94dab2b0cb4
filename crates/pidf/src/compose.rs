//! Composition of several publications into the one document watchers receive (RFC 3903
//! leaves the policy to the presence server; this is ours).

use std::collections::HashSet;

use crate::document::Document;

/// One live publication as the compositor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    /// The publication's entity tag (SIP-ETag); distinct for each live publication.
    pub etag: &'a str,
    /// When the publication was last refreshed or modified, in milliseconds since the epoch.
    pub published_at_ms: u64,
    /// The published document.
    pub document: &'a Document,
}

/// Composes the live publications of `entity` into one document.
///
/// Policy:
/// - Publications are ordered newest first by `published_at_ms`, ties broken by `etag`, so the
///   result does not depend on the order of `publications`.
/// - **Tuples**: every tuple of every publication, newest publication first. Ids must be unique
///   in a document, so an id already taken (by an earlier tuple, person or device in this
///   order) gets `-<etag>` appended (the etag reduced to characters valid in an XML id), and a
///   counter if that is still taken. The newest publication keeps its ids unchanged.
/// - **Devices**: every device of every publication, ids made unique the same way.
/// - **Persons**: the person elements of the most recent publication that has any, so a device
///   that only publishes tuples does not erase the user's activities set from another device.
/// - **Document-level notes and extensions**: those of the most recent publication only.
/// - **Overall status**: nothing is merged inside tuples, so each service keeps its own
///   `<basic>`; the presentity is open ([`Document::basic`]) when at least one tuple of any
///   live publication is open, and closed otherwise.
///
/// With no publication the result is [`Document::closed`]. The result's entity is `entity`,
/// whatever the publications say.
pub fn compose(entity: &str, publications: &[Publication<'_>]) -> Document {
    if publications.is_empty() {
        return Document::closed(entity);
    }
    let mut ordered: Vec<&Publication<'_>> = publications.iter().collect();
    ordered.sort_by(|a, b| {
        b.published_at_ms
            .cmp(&a.published_at_ms)
            .then_with(|| a.etag.cmp(b.etag))
    });
    let mut composed = Document::new(entity);
    let mut taken: HashSet<String> = HashSet::new();

    if let Some(newest) = ordered.first() {
        composed.notes = newest.document.notes.clone();
        composed.extensions = newest.document.extensions.clone();
    }
    let person_source = ordered
        .iter()
        .position(|publication| !publication.document.persons.is_empty());
    // Ids are claimed publication by publication, newest first, so the newest keeps its own.
    for (index, publication) in ordered.iter().enumerate() {
        for tuple in &publication.document.tuples {
            let mut tuple = tuple.clone();
            tuple.id = unique_id(&tuple.id, publication.etag, &mut taken);
            composed.tuples.push(tuple);
        }
        if person_source == Some(index) {
            for person in &publication.document.persons {
                let mut person = person.clone();
                person.id = unique_id(&person.id, publication.etag, &mut taken);
                composed.persons.push(person);
            }
        }
        for device in &publication.document.devices {
            let mut device = device.clone();
            device.id = unique_id(&device.id, publication.etag, &mut taken);
            composed.devices.push(device);
        }
    }
    composed
}

/// `id` if it is free, else `id-<etag>`, else `id-<etag>-<n>`; the chosen id is marked taken.
fn unique_id(id: &str, etag: &str, taken: &mut HashSet<String>) -> String {
    let base = if id.is_empty() { "id" } else { id };
    if !id.is_empty() && taken.insert(id.to_owned()) {
        return id.to_owned();
    }
    let suffixed = format!("{base}-{}", id_safe(etag));
    if taken.insert(suffixed.clone()) {
        return suffixed;
    }
    let mut counter = 2u64;
    loop {
        let candidate = format!("{suffixed}-{counter}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        counter += 1;
    }
}

/// `text` with every character not allowed after the first character of an XML id
/// replaced by `_`.
fn id_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
