//! `clear`: the end of an application's presence publication (ClearPresence).

use serde_json::json;

use crate::{call_error, presence, print_json, Clients};

pub(crate) async fn clear(
    clients: &Clients,
    presentity: String,
    source: String,
    json: bool,
) -> anyhow::Result<()> {
    let request = presence::ClearPresenceRequest {
        presentity: presentity.clone(),
        source: source.clone(),
    };
    let response = clients
        .presence()?
        .clear_presence(clients.request(request))
        .await
        .map_err(|s| call_error("ClearPresence", s))?
        .into_inner();
    if json {
        print_json(&json!({
            "presentity": presentity,
            "source": source,
            "removed": response.removed,
            "version": response.version,
        }));
    } else if response.removed {
        println!(
            "cleared {source} for {presentity} (version {})",
            response.version
        );
    } else {
        println!("{presentity} had no publication from {source}");
    }
    Ok(())
}
