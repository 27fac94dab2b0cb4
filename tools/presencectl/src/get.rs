//! `get`: the presence state of one or more presentities.

use serde_json::Value;

use crate::table::Table;
use crate::{basic_name, call_error, presence, print_json, state_json, Clients};

pub(crate) async fn get(
    clients: &Clients,
    presentities: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = clients.presence()?;
    let states = if let [presentity] = presentities.as_slice() {
        let request = presence::GetPresenceRequest {
            presentity: presentity.clone(),
        };
        vec![client
            .get_presence(clients.request(request))
            .await
            .map_err(|s| call_error("GetPresence", s))?
            .into_inner()]
    } else {
        let request = presence::BatchGetPresenceRequest { presentities };
        client
            .batch_get_presence(clients.request(request))
            .await
            .map_err(|s| call_error("BatchGetPresence", s))?
            .into_inner()
            .states
    };
    if json {
        match states.as_slice() {
            [one] => print_json(&state_json(one)),
            many => print_json(&Value::Array(many.iter().map(state_json).collect())),
        }
        return Ok(());
    }
    let mut table = Table::new(&["PRESENTITY", "STATUS", "BASIC", "VERSION", "NOTE"]);
    for state in &states {
        table.row(vec![
            state.presentity.clone(),
            state.status.clone(),
            basic_name(state.basic).into(),
            state.version.to_string(),
            state.note.clone(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
