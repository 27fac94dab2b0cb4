//! `watch`: presence changes as they happen, reconnecting after transient failures.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tonic::Code;

use crate::table;
use crate::{basic_name, call_error, presence, state_json, Clients};

/// `HH:MM:SS.mmm` (UTC) of now.
pub(crate) fn clock() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// Codes after which a watch reconnects rather than giving up.
pub(crate) fn retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
    )
}

pub(crate) async fn watch(
    clients: &Clients,
    presentities: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = clients.presence()?;
    let width = presentities
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max("PRESENTITY".len());
    let widths = [12, width, 16, 7, 14];
    if !json {
        println!(
            "{}",
            table::line(
                &["TIME", "PRESENTITY", "STATUS", "BASIC", "VERSION", "NOTE"].map(String::from),
                &widths
            )
        );
    }
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        let request = presence::WatchPresenceRequest {
            presentities: presentities.clone(),
            known_versions: known.clone(),
        };
        let failure = match client.watch_presence(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => match event.event {
                            Some(presence::watch_presence_event::Event::State(state)) => {
                                known.insert(state.presentity.clone(), state.version);
                                if json {
                                    println!("{}", state_json(&state));
                                } else {
                                    let cells = [
                                        clock(),
                                        state.presentity.clone(),
                                        state.status.clone(),
                                        basic_name(state.basic).to_string(),
                                        state.version.to_string(),
                                        state.note.clone(),
                                    ];
                                    println!("{}", table::line(&cells, &widths));
                                }
                            }
                            Some(presence::watch_presence_event::Event::Synced(_)) => {
                                backoff = Duration::from_millis(500);
                                if json {
                                    println!("{}", json!({ "synced": true }));
                                } else {
                                    eprintln!(
                                        "-- up to date; watching {} presentities for changes",
                                        presentities.len()
                                    );
                                }
                            }
                            None => {}
                        },
                        Ok(None) => {
                            break tonic::Status::unavailable("the server ended the stream")
                        }
                        Err(status) => break status,
                    }
                }
            }
            Err(status) => status,
        };
        if !retriable(failure.code()) {
            return Err(call_error("WatchPresence", failure));
        }
        eprintln!(
            "-- {:?}: {}; reconnecting in {:?}",
            failure.code(),
            failure.message(),
            backoff
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
