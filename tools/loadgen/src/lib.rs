//! A load generator for SIP presence servers (RFC 3856, 3903, 6665, PIDF).
//!
//! It speaks only standard SIP and PIDF, so it runs against this project's
//! service and against any RFC presence server:
//!
//! * [`tokens`] mints bearer tokens for many users and the JWKS a server
//!   trusts them with.
//! * [`transport`] is a UDP endpoint that multiplexes many user agents over
//!   one socket: client transactions with RFC 3261 retransmissions, and
//!   incoming requests answered at once.
//! * [`dialog`] holds the subscriptions (dialogs) of the watchers and
//!   answers their NOTIFYs; [`checks`] judges each NOTIFY a dialog receives.
//! * [`marker`] puts a sequence number and a send time into published
//!   documents and finds them in notified ones.
//! * [`ua`] builds the requests of one user (REGISTER, PUBLISH, SUBSCRIBE).
//! * [`kernel`] reads the kernel's receive-drop counters of UDP sockets.
//! * [`stats`] holds latency histograms and request counters; [`report`]
//!   prints them as a table or JSON.
//! * [`scenarios`] are the load profiles: `fanout` and `office`.

#![forbid(unsafe_code)]

pub mod checks;
pub mod clock;
pub mod dialog;
pub mod kernel;
pub mod marker;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod tokens;
pub mod transport;
pub mod ua;
pub mod users;
