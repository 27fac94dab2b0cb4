//! `unregister`: administrative removal of an AOR's bindings.

use serde_json::json;

use crate::bindings::{binding_json, bindings_table};
use crate::{call_error, print_json, registrar, Clients};

pub(crate) async fn unregister(
    clients: &Clients,
    aor: String,
    contact: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let request = registrar::UnregisterRequest {
        aor: aor.clone(),
        contact: contact.clone().unwrap_or_default(),
    };
    let removed = clients
        .registrar()?
        .unregister(clients.request(request))
        .await
        .map_err(|s| call_error("Unregister", s))?
        .into_inner()
        .removed;
    if json {
        print_json(&json!({
            "aor": aor,
            "removed": removed.iter().map(binding_json).collect::<Vec<_>>(),
        }));
    } else if removed.is_empty() {
        match contact {
            Some(contact) => println!("{aor} has no binding {contact}"),
            None => println!("{aor} has no binding"),
        }
    } else {
        println!("removed {} binding(s) of {aor}:", removed.len());
        print!("{}", bindings_table(&[(aor, removed)]));
    }
    Ok(())
}
