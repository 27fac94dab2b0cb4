//! `presence.v1` over gRPC: a thin adapter between protobuf messages and the
//! compositor / subscription types.

mod convert;
mod status;

use bytes::Bytes;
use contract::now_ms;
use grpc_auth::Caller;
use rpc::presence::v1 as pb;
use tonic::{Request, Response, Status};

use self::convert::status_to_pb;
pub use self::convert::{rules_from_pb, rules_to_pb, state_to_pb};
use self::status::{publish_status, rules_status, store_status, subscription_status};
use crate::ownership::Ownership;
use crate::rules::{self, Action, RuleSet};
use crate::sources::{parse_status, SetSourceCommand, SourceContent};
use crate::subscriptions::SubscriptionStatus;
use crate::watch::{WatchHub, WatchRequest};
use crate::{Compositor, PublishCommand, SubscribeCommand, Subscriptions};

/// Upper bound on presentities in one BatchGetPresence.
const MAX_BATCH: usize = 1000;
/// Upper bound on dialogs in one RestoreDialogs.
const MAX_RESTORE: usize = 1000;

/// The gRPC face of the presence service.
pub struct PresenceService {
    compositor: Compositor,
    subscriptions: Subscriptions,
    watch_hub: WatchHub,
    ownership: Ownership,
}

impl PresenceService {
    pub fn new(compositor: Compositor, subscriptions: Subscriptions) -> Self {
        let watch_hub = WatchHub::new(compositor.backend().clone());
        let ownership = Ownership::new(compositor.clone());
        PresenceService {
            compositor,
            subscriptions,
            watch_hub,
            ownership,
        }
    }

    pub fn into_server(self) -> pb::presence_server::PresenceServer<Self> {
        pb::presence_server::PresenceServer::new(self)
    }
}

/// The name stored as publisher of what an application sets: its token's
/// client or subject, or `anonymous` on an unauthenticated API.
fn caller_name<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_string(), |c| c.name().to_string())
}

/// The registrar's source is its own: applications may not set or clear it.
fn reserved_source(source: &str) -> Result<(), Status> {
    if source == crate::compositor::REGISTRATION_SOURCE {
        Err(Status::invalid_argument(format!(
            "source {source:?} is reserved for registration-driven presence"
        )))
    } else {
        Ok(())
    }
}

fn require(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::presence_server::Presence for PresenceService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let r = request.into_inner();
        require("presentity", &r.presentity)?;
        let command = PublishCommand {
            presentity: r.presentity,
            if_match: (!r.if_match.is_empty()).then_some(r.if_match),
            expires: r.expires,
            body: (!r.body.is_empty()).then(|| (r.content_type, Bytes::from(r.body))),
            publisher: r.publisher,
        };
        let outcome = self
            .compositor
            .publish(&command, now_ms())
            .await
            .map_err(|e| {
                tracing::info!(presentity = %command.presentity, error = %e, "PUBLISH refused");
                publish_status(e)
            })?;
        Ok(Response::new(pb::PublishResponse {
            etag: outcome.etag,
            expires: outcome.expires,
            version: outcome.version,
        }))
    }

    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::PresenceState>, Status> {
        let presentity = request.into_inner().presentity;
        require("presentity", &presentity)?;
        let view = self
            .compositor
            .view(&presentity)
            .await
            .map_err(store_status)?;
        Ok(Response::new(state_to_pb(view)))
    }

    async fn batch_get_presence(
        &self,
        request: Request<pb::BatchGetPresenceRequest>,
    ) -> Result<Response<pb::BatchGetPresenceResponse>, Status> {
        let presentities = request.into_inner().presentities;
        if presentities.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} presentities per call"
            )));
        }
        let views = self
            .compositor
            .views(&presentities)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::BatchGetPresenceResponse {
            states: views.into_iter().map(state_to_pb).collect(),
        }))
    }

    type WatchPresenceStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::WatchPresenceEvent, Status>>;

    async fn watch_presence(
        &self,
        request: Request<pb::WatchPresenceRequest>,
    ) -> Result<Response<Self::WatchPresenceStream>, Status> {
        let expires_at = request
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.identity.expires_at);
        let r = request.into_inner();
        let mut watch = WatchRequest::new(r.presentities, r.known_versions)?;
        watch.credentials_expire =
            expires_at.map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        let events = crate::watch::start(&self.watch_hub, self.compositor.clone(), watch).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            events,
        )))
    }

    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Result<Response<pb::SetPresenceResponse>, Status> {
        let publisher = caller_name(&request);
        let r = request.into_inner();
        reserved_source(&r.source)?;
        let content = if r.pidf.is_empty() {
            SourceContent::Status {
                status: parse_status(&r.status).map_err(publish_status)?,
                note: (!r.note.is_empty()).then_some(r.note),
            }
        } else {
            SourceContent::Pidf(Bytes::from(r.pidf))
        };
        let command = SetSourceCommand {
            presentity: r.presentity,
            source: r.source,
            content,
            expires: r.expires,
            publisher,
        };
        let outcome = self
            .compositor
            .set_source(&command, now_ms())
            .await
            .map_err(|e| {
                tracing::info!(presentity = %command.presentity, source = %command.source, error = %e, "SetPresence refused");
                publish_status(e)
            })?;
        Ok(Response::new(pb::SetPresenceResponse {
            version: outcome.version,
            expires: outcome.expires,
        }))
    }

    async fn clear_presence(
        &self,
        request: Request<pb::ClearPresenceRequest>,
    ) -> Result<Response<pb::ClearPresenceResponse>, Status> {
        let r = request.into_inner();
        reserved_source(&r.source)?;
        let outcome = self
            .compositor
            .clear_source(&r.presentity, &r.source, now_ms())
            .await
            .map_err(|e| {
                tracing::info!(presentity = %r.presentity, source = %r.source, error = %e, "ClearPresence refused");
                publish_status(e)
            })?;
        Ok(Response::new(pb::ClearPresenceResponse {
            removed: outcome.removed,
            version: outcome.version,
        }))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::SubscribeResponse>, Status> {
        let r = request.into_inner();
        require("presentity", &r.presentity)?;
        let dialog = r
            .dialog
            .ok_or_else(|| Status::invalid_argument("dialog is required"))?;
        require("dialog.id", &dialog.id)?;
        let command = SubscribeCommand {
            presentity: r.presentity,
            dialog: dialog.into(),
            expires: r.expires,
            refresh: r.refresh,
        };
        let outcome = self
            .subscriptions
            .subscribe(&command, now_ms())
            .await
            .map_err(subscription_status)?;
        Ok(Response::new(pb::SubscribeResponse {
            expires: outcome.expires,
            status: status_to_pb(outcome.status),
            state: Some(state_to_pb(outcome.view)),
            dialog: Some(outcome.dialog.into()),
            masked: outcome.masked,
            watchers: outcome.watchers.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_watchers(
        &self,
        request: Request<pb::ListWatchersRequest>,
    ) -> Result<Response<pb::ListWatchersResponse>, Status> {
        let presentity = request.into_inner().presentity;
        require("presentity", &presentity)?;
        let watchers = self
            .subscriptions
            .watchers(&presentity)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListWatchersResponse {
            watchers: watchers.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_rules(
        &self,
        request: Request<pb::GetRulesRequest>,
    ) -> Result<Response<pb::RulesResponse>, Status> {
        let presentity = request.into_inner().presentity;
        require("presentity", &presentity)?;
        let rules = rules::load(self.compositor.backend().as_ref(), &presentity)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::RulesResponse {
            rules: Some(rules_to_pb(rules)),
            subscriptions_changed: 0,
        }))
    }

    async fn set_rules(
        &self,
        request: Request<pb::SetRulesRequest>,
    ) -> Result<Response<pb::RulesResponse>, Status> {
        let r = request.into_inner();
        require("presentity", &r.presentity)?;
        let new_rules = rules_from_pb(r.rules.unwrap_or_default())?;
        self.change_rules(&r.presentity, move |rules| *rules = new_rules.clone())
            .await
    }

    async fn approve_watcher(
        &self,
        request: Request<pb::DecideWatcherRequest>,
    ) -> Result<Response<pb::RulesResponse>, Status> {
        let r = request.into_inner();
        require("presentity", &r.presentity)?;
        require("watcher", &r.watcher)?;
        let watcher = rules::normalise(&r.watcher);
        self.change_rules(&r.presentity, move |rules| {
            rules.watchers.insert(watcher.clone(), Action::Allow);
        })
        .await
    }

    async fn reject_watcher(
        &self,
        request: Request<pb::DecideWatcherRequest>,
    ) -> Result<Response<pb::RulesResponse>, Status> {
        let r = request.into_inner();
        require("presentity", &r.presentity)?;
        require("watcher", &r.watcher)?;
        let watcher = rules::normalise(&r.watcher);
        let verdict = if r.polite {
            Action::PoliteBlock
        } else {
            Action::Block
        };
        self.change_rules(&r.presentity, move |rules| {
            rules.watchers.insert(watcher.clone(), verdict);
        })
        .await
    }

    async fn unsubscribe(
        &self,
        request: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::UnsubscribeResponse>, Status> {
        let r = request.into_inner();
        let removed = self
            .subscriptions
            .unsubscribe(&r.presentity, &r.dialog_id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::UnsubscribeResponse { removed }))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let r = request.into_inner();
        require("edge_id", &r.edge_id)?;
        if !r.handed_over.is_empty() {
            self.hand_over(&r.edge_id, r.handed_over).await?;
        }
        if r.release {
            tracing::info!(edge = %r.edge_id, "edge released its lease");
            self.ownership
                .release(&r.edge_id)
                .await
                .map_err(store_status)?;
            return Ok(Response::new(pb::RenewLeaseResponse::default()));
        }
        // The epoch first: renewing re-creates the lease in an emptied
        // backend, and the edge must hear of the loss in the same answer.
        let state_epoch = crate::epoch::current(self.compositor.backend().as_ref())
            .await
            .map_err(store_status)?;
        self.ownership
            .renew(&r.edge_id, r.ttl_ms, now_ms())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::RenewLeaseResponse { state_epoch }))
    }

    async fn restore_dialogs(
        &self,
        request: Request<pb::RestoreDialogsRequest>,
    ) -> Result<Response<pb::RestoreDialogsResponse>, Status> {
        let r = request.into_inner();
        require("edge_id", &r.edge_id)?;
        if r.dialogs.len() > MAX_RESTORE {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_RESTORE} dialogs per call"
            )));
        }
        let now = now_ms();
        let mut views: std::collections::HashMap<String, pb::PresenceState> =
            std::collections::HashMap::new();
        let mut restored = Vec::with_capacity(r.dialogs.len());
        for held in r.dialogs {
            require("presentity", &held.presentity)?;
            let dialog = held
                .dialog
                .ok_or_else(|| Status::invalid_argument("dialog is required"))?;
            require("dialog.id", &dialog.id)?;
            let mut dialog = contract::DialogRecord::from(dialog);
            // Only the caller can vouch for the dialogs it holds.
            dialog.edge_id = r.edge_id.clone();
            let dialog_id = dialog.id.clone();
            let created = self
                .subscriptions
                .restore(&held.presentity, dialog, held.expires_in_ms, now)
                .await
                .map_err(store_status)?;
            let state = match views.get(&held.presentity) {
                Some(state) => state.clone(),
                None => {
                    let view = self
                        .compositor
                        .view(&held.presentity)
                        .await
                        .map_err(store_status)?;
                    let state = state_to_pb(view);
                    views.insert(held.presentity.clone(), state.clone());
                    state
                }
            };
            restored.push(pb::RestoredDialog {
                dialog_id,
                restored: created,
                state: Some(state),
            });
        }
        let count = restored.iter().filter(|d| d.restored).count();
        tracing::warn!(
            edge = %r.edge_id,
            restored = count,
            already_stored = restored.len() - count,
            "subscription records restored from an edge after a loss of state"
        );
        Ok(Response::new(pb::RestoreDialogsResponse {
            dialogs: restored,
        }))
    }

    async fn claim_dialogs(
        &self,
        request: Request<pb::ClaimDialogsRequest>,
    ) -> Result<Response<pb::ClaimDialogsResponse>, Status> {
        let r = request.into_inner();
        require("edge_id", &r.edge_id)?;
        let claimed = self
            .ownership
            .claim(&r.edge_id, r.max.clamp(1, 1000) as usize, now_ms())
            .await
            .map_err(store_status)?;
        if !claimed.is_empty() {
            tracing::info!(edge = %r.edge_id, dialogs = claimed.len(), "dialogs taken over");
        }
        let mut dialogs = Vec::with_capacity(claimed.len());
        for c in claimed {
            let watchers = if c.record.dialog.is_winfo() {
                self.subscriptions
                    .watchers(&c.record.presentity)
                    .await
                    .map_err(store_status)?
            } else {
                Vec::new()
            };
            let view = if crate::subscriptions::shows_neutral(c.record.status, c.record.masked) {
                crate::subscriptions::neutral_view(&c.record.presentity)
            } else {
                c.view
            };
            let notified = c
                .handed_over
                .is_some_and(|n| n.covers(&c.record, view.version));
            dialogs.push(pb::ClaimedDialog {
                notified,
                presentity: c.record.presentity.clone(),
                expires_at_ms: c.record.expires_at_ms,
                status: status_to_pb(c.record.status),
                masked: c.record.masked,
                dialog: Some(c.record.dialog.into()),
                state: Some(state_to_pb(view)),
                watchers: watchers.into_iter().map(Into::into).collect(),
            });
        }
        Ok(Response::new(pb::ClaimDialogsResponse { dialogs }))
    }
}

impl PresenceService {
    /// Records what the watchers of the dialogs a draining edge gives up
    /// last acknowledged (see `Ownership::hand_over`).
    async fn hand_over(
        &self,
        edge_id: &str,
        dialogs: Vec<pb::HandedOverDialog>,
    ) -> Result<(), Status> {
        use crate::ownership::{HandedOver, Notified, MAX_HAND_OVER};
        if dialogs.len() > MAX_HAND_OVER {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_HAND_OVER} handed_over dialogs per call"
            )));
        }
        let dialogs: Vec<HandedOver> = dialogs
            .into_iter()
            .filter_map(|d| {
                // Only what a watcher can have been shown: an active or
                // pending subscription.
                let status = match pb::SubscriptionStatus::try_from(d.status).ok()? {
                    pb::SubscriptionStatus::Active => SubscriptionStatus::Active,
                    pb::SubscriptionStatus::Pending => SubscriptionStatus::Pending,
                    _ => return None,
                };
                if d.presentity.is_empty() || d.dialog_id.is_empty() {
                    return None;
                }
                Some(HandedOver {
                    presentity: d.presentity,
                    dialog_id: d.dialog_id,
                    notified: Notified {
                        status,
                        masked: d.masked,
                        version: d.version,
                    },
                })
            })
            .collect();
        let offered = dialogs.len();
        let written = self
            .ownership
            .hand_over(edge_id, dialogs)
            .await
            .map_err(store_status)?;
        tracing::info!(edge = %edge_id, offered, written, "dialogs handed over");
        Ok(())
    }

    /// Changes a presentity's rules and applies them to its live
    /// subscriptions.
    async fn change_rules(
        &self,
        presentity: &str,
        change: impl Fn(&mut RuleSet),
    ) -> Result<Response<pb::RulesResponse>, Status> {
        let rules = rules::update(self.compositor.backend().as_ref(), presentity, change)
            .await
            .map_err(rules_status)?;
        let changed = self
            .subscriptions
            .apply_rules(presentity)
            .await
            .map_err(subscription_status)?;
        tracing::info!(%presentity, subscriptions_changed = changed, "rules changed");
        Ok(Response::new(pb::RulesResponse {
            rules: Some(rules_to_pb(rules)),
            subscriptions_changed: changed as u32,
        }))
    }
}
