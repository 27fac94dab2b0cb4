//! Channel watches, counted: the edge hears a presentity's channel while
//! anything holds it (a dialog, or a subscription being set up), and
//! remembers the latest state heard there, so a dialog starting late still
//! starts from it.

use std::sync::Arc;

use super::{Dialogs, Watched};

impl Dialogs {
    /// Starts hearing `presentity`'s channel (if not already) on behalf of
    /// one more holder. Every successful `hold` is matched by one `release`,
    /// directly or through the dialog it becomes.
    pub async fn hold(&self, presentity: &str) -> Result<(), store::StoreError> {
        let first = {
            let mut index = locks::lock(&self.index);
            if !index.presentities.contains_key(presentity) {
                index
                    .presentities
                    .insert(Arc::from(presentity), Watched::default());
            }
            match index.presentities.get_mut(presentity) {
                Some(w) => {
                    w.holders += 1;
                    w.holders == 1
                }
                None => false,
            }
        };
        if first {
            if let Err(e) = self.feed.watch(presentity).await {
                self.release(presentity).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Drops one holder of `presentity`; the channel is left with the last.
    pub async fn release(&self, presentity: &str) {
        let last = {
            let mut index = locks::lock(&self.index);
            match index.presentities.get_mut(presentity) {
                Some(w) if w.holders > 1 => {
                    w.holders -= 1;
                    false
                }
                Some(w) if w.holders == 1 => {
                    // What was heard is forgotten with the channel. Dialogs
                    // left without a holder (none should be: each holds
                    // the channel until it is removed) keep their ids.
                    if w.dialogs.is_empty() {
                        index.presentities.remove(presentity);
                    } else {
                        let dialogs = std::mem::take(&mut w.dialogs);
                        *w = Watched {
                            dialogs,
                            ..Watched::default()
                        };
                    }
                    true
                }
                _ => false,
            }
        };
        if last {
            if let Err(e) = self.feed.unwatch(presentity).await {
                tracing::warn!(%presentity, error = %e, "unwatching presentity failed");
            }
        }
    }

    /// A mark in the sequence of states heard on channels: what is heard
    /// after it was published after the mark was taken.
    pub fn mark(&self) -> u64 {
        locks::lock(&self.index).heard
    }

    /// Presentities this edge hears (for resynchronisation after a gap).
    pub fn watched(&self) -> Vec<String> {
        locks::lock(&self.index)
            .presentities
            .iter()
            .filter(|(_, w)| w.holders > 0)
            .map(|(presentity, _)| presentity.to_string())
            .collect()
    }
}
