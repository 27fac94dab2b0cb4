//! Errors of the presence service as gRPC statuses, each mapped in one
//! place (the edge turns them into SIP responses).

use store::StoreError;
use tonic::Status;

use crate::rules::RulesError;
use crate::{PublishError, SubscriptionError};

fn too_brief(min_expires: u32) -> Status {
    let mut status = Status::out_of_range(format!("interval too brief; minimum {min_expires}s"));
    if let Ok(value) = min_expires.to_string().parse() {
        status.metadata_mut().insert("min-expires", value);
    }
    status
}

pub(super) fn publish_status(error: PublishError) -> Status {
    match error {
        PublishError::UnknownEtag(_) => Status::failed_precondition(error.to_string()),
        PublishError::IntervalTooBrief { min_expires } => too_brief(min_expires),
        PublishError::UnsupportedMediaType(_) => Status::unimplemented(error.to_string()),
        PublishError::BadRequest(_) => Status::invalid_argument(error.to_string()),
        // The edge answers RESOURCE_EXHAUSTED with 503, Retry-After and the
        // message as the reason phrase (see README, Limits).
        PublishError::TooManyPublications { .. } | PublishError::DocumentTooLarge { .. } => {
            Status::resource_exhausted(error.to_string())
        }
        PublishError::Store(_) | PublishError::Contended(_) => {
            Status::unavailable(error.to_string())
        }
    }
}

pub(super) fn subscription_status(error: SubscriptionError) -> Status {
    match error {
        SubscriptionError::NotFound(_) => Status::not_found(error.to_string()),
        SubscriptionError::IntervalTooBrief { min_expires } => too_brief(min_expires),
        SubscriptionError::Forbidden(_) => Status::permission_denied(error.to_string()),
        SubscriptionError::TooMany { .. } => Status::resource_exhausted(error.to_string()),
        SubscriptionError::Store(_) | SubscriptionError::Rules(_) => {
            Status::unavailable(error.to_string())
        }
    }
}

pub(super) fn rules_status(error: RulesError) -> Status {
    Status::unavailable(error.to_string())
}

/// The one mapping of a state backend failure: the call may be retried,
/// here or on another replica.
pub(super) fn store_status(error: StoreError) -> Status {
    Status::unavailable(error.to_string())
}
