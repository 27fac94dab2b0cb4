//! The limits of publications, subscriptions and documents the compositor enforces, and their defaults.

/// Limits of publications and subscriptions, in seconds.
#[derive(Clone, Debug)]
pub struct PresenceConfig {
    pub min_publish_expires: u32,
    pub max_publish_expires: u32,
    pub default_publish_expires: u32,
    pub min_subscribe_expires: u32,
    pub max_subscribe_expires: u32,
    pub default_subscribe_expires: u32,
    /// Limits applied to PIDF bodies.
    pub pidf_limits: pidf::Limits,
    /// Who may watch a presentity that has no rule for the watcher.
    pub default_policy: crate::rules::DefaultPolicy,
    /// Most live publications of one presentity (SIP PUBLISH and
    /// SetPresence sources; the registration publication is not counted).
    pub max_publications: usize,
    /// Most bytes of published documents one presentity's composed
    /// document is made from.
    pub max_document_bytes: usize,
    /// Most live `presence` and `presence.winfo` subscriptions of one
    /// watcher identity, cluster-wide.
    pub max_subscriptions_per_watcher: usize,
    /// How long after a presentity's own publications went the
    /// registration-driven state waits before it is shown (ms): a phone
    /// that un-PUBLISHes and then un-REGISTERs goes straight to `closed`
    /// instead of blinking `open` in between.
    pub registration_holdoff_ms: u64,
}

/// Default of [`PresenceConfig::max_publications`]: a user's devices and
/// applications together, with room to spare.
pub const DEFAULT_MAX_PUBLICATIONS: usize = 16;
/// Default of [`PresenceConfig::max_document_bytes`]: two documents of the
/// largest size one publication may have.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 2 * pidf::Limits::DEFAULT.max_bytes;
/// Default of [`PresenceConfig::max_subscriptions_per_watcher`]: a large
/// contact list watched from several devices.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER: usize = 1000;
/// Default of [`PresenceConfig::registration_holdoff_ms`]: longer than a
/// phone takes between its un-PUBLISH and its un-REGISTER.
pub const DEFAULT_REGISTRATION_HOLDOFF_MS: u64 = 1500;

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            min_publish_expires: 60,
            max_publish_expires: 7200,
            default_publish_expires: 3600,
            min_subscribe_expires: 60,
            max_subscribe_expires: 7200,
            default_subscribe_expires: 3600,
            pidf_limits: pidf::Limits::default(),
            default_policy: crate::rules::DefaultPolicy::SameDomain,
            max_publications: DEFAULT_MAX_PUBLICATIONS,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_subscriptions_per_watcher: DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER,
            registration_holdoff_ms: DEFAULT_REGISTRATION_HOLDOFF_MS,
        }
    }
}
