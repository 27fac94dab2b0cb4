//! Channel watches, counted: the edge hears a presentity's channel while
//! anything holds it (a dialog, or a subscription being set up), and
//! remembers the latest state heard there, so a dialog starting late still
//! starts from it.

use super::Dialogs;

impl Dialogs {
    /// Starts hearing `presentity`'s channel (if not already) on behalf of
    /// one more holder. Every successful `hold` is matched by one `release`,
    /// directly or through the dialog it becomes.
    pub async fn hold(&self, presentity: &str) -> Result<(), store::StoreError> {
        let first = {
            let mut index = locks::lock(&self.index);
            let w = index.watched.entry(presentity.to_string()).or_default();
            w.holders += 1;
            w.holders == 1
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
            match index.watched.get_mut(presentity) {
                Some(w) if w.holders > 1 => {
                    w.holders -= 1;
                    false
                }
                Some(_) => {
                    index.watched.remove(presentity);
                    true
                }
                None => false,
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
        locks::lock(&self.index).watched.keys().cloned().collect()
    }
}
