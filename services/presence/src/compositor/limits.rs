//! The per-presentity limits (publications, document bytes) checked before a change is stored, and
//! the metric of refusals by limit.

use super::{PresenceConfig, PublishError, StoredPublication, REGISTRATION_SOURCE};

/// Refusals of requests beyond a per-client limit, by limit
/// (`publications`, `document_bytes`, `subscriptions_per_watcher`).
pub(crate) fn count_limit_refusal(limit: &'static str) {
    use telemetry::prometheus_client::metrics::counter::Counter;
    use telemetry::prometheus_client::metrics::family::Family;
    type Refusals = Family<[(&'static str, &'static str); 1], Counter>;
    static REFUSALS: std::sync::LazyLock<Refusals> = std::sync::LazyLock::new(|| {
        telemetry::register(
            "presence_limit_refusals",
            "Requests refused because a per-client limit was reached, by limit",
            Refusals::default(),
        )
    });
    REFUSALS.get_or_create(&[("limit", limit)]).inc();
}

/// Whether a publication counts against the per-presentity limits: the
/// registrar's registration publication is the service's own, one at most.
pub(crate) fn counted(publication: &StoredPublication) -> bool {
    publication.source.as_deref() != Some(REGISTRATION_SOURCE)
}

/// Checks the per-presentity limits on the publications as they would be
/// after a change, before anything is composed or stored: `added` when the
/// change creates a publication, `before_bytes` the counted bytes before
/// it. A change that does not grow what is over a limit passes, so a
/// presentity over a lowered limit can still refresh, shrink and remove.
pub(crate) fn check_limits(
    config: &PresenceConfig,
    presentity: &str,
    publications: &[StoredPublication],
    added: bool,
    before_bytes: usize,
) -> Result<(), PublishError> {
    if added {
        let count = publications.iter().filter(|p| counted(p)).count();
        if count > config.max_publications {
            count_limit_refusal("publications");
            tracing::info!(%presentity, count, limit = config.max_publications, "publication refused: too many publications");
            return Err(PublishError::TooManyPublications {
                limit: config.max_publications,
            });
        }
    }
    let bytes = counted_bytes(publications);
    if bytes > config.max_document_bytes && bytes > before_bytes {
        count_limit_refusal("document_bytes");
        tracing::info!(%presentity, bytes, limit = config.max_document_bytes, "publication refused: documents too large");
        return Err(PublishError::DocumentTooLarge {
            limit: config.max_document_bytes,
        });
    }
    Ok(())
}

/// The bytes of the counted publications' documents.
pub(crate) fn counted_bytes(publications: &[StoredPublication]) -> usize {
    publications
        .iter()
        .filter(|p| counted(p))
        .map(|p| p.body.len())
        .sum()
}
