//! `set`: an application's presence publication (SetPresence).

use serde_json::json;

use crate::table::Table;
use crate::{call_error, presence, print_json, Clients};

pub(crate) async fn set(
    clients: &Clients,
    request: presence::SetPresenceRequest,
    json: bool,
) -> anyhow::Result<()> {
    let presentity = request.presentity.clone();
    let source = request.source.clone();
    let response = clients
        .presence()?
        .set_presence(clients.request(request))
        .await
        .map_err(|s| call_error("SetPresence", s))?
        .into_inner();
    if json {
        print_json(&json!({
            "presentity": presentity,
            "source": source,
            "version": response.version,
            "expires": response.expires,
        }));
    } else {
        let mut table = Table::new(&["PRESENTITY", "SOURCE", "VERSION", "EXPIRES"]);
        table.row(vec![
            presentity,
            source,
            response.version.to_string(),
            format!("{}s", response.expires),
        ]);
        print!("{}", table.render());
    }
    Ok(())
}
