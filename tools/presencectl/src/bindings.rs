//! `bindings`: the registered contacts of one or more AORs.

use serde_json::{json, Value};

use crate::table::Table;
use crate::{call_error, print_json, registrar, Clients};

pub(crate) fn binding_json(binding: &registrar::Binding) -> Value {
    json!({
        "uri": binding.uri,
        "expires": binding.expires,
        "expires_at_ms": binding.expires_at_ms,
        "q": binding.q_milli.map(|q| f64::from(q) / 1000.0),
        "instance_id": binding.instance_id,
        "reg_id": binding.reg_id,
        "call_id": binding.call_id,
        "cseq": binding.cseq,
        "transport": binding.transport,
        "source": binding.source,
        "user_agent": binding.user_agent,
    })
}

pub(crate) fn bindings_table(rows: &[(String, Vec<registrar::Binding>)]) -> String {
    let mut table = Table::new(&[
        "AOR",
        "CONTACT",
        "EXPIRES",
        "Q",
        "TRANSPORT",
        "SOURCE",
        "USER-AGENT",
    ]);
    for (aor, bindings) in rows {
        for b in bindings {
            table.row(vec![
                aor.clone(),
                b.uri.clone(),
                format!("{}s", b.expires),
                b.q_milli
                    .map(|q| format!("{:.3}", f64::from(q) / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                b.transport.clone(),
                b.source.clone(),
                b.user_agent.clone(),
            ]);
        }
    }
    table.render()
}

pub(crate) async fn bindings(
    clients: &Clients,
    aors: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let response = clients
        .registrar()?
        .list_bindings(clients.request(registrar::ListBindingsRequest { aors }))
        .await
        .map_err(|s| call_error("ListBindings", s))?
        .into_inner();
    let rows: Vec<(String, Vec<registrar::Binding>)> = response
        .aors
        .into_iter()
        .map(|a| (a.aor, a.bindings))
        .collect();
    if json {
        print_json(&Value::Array(
            rows.iter()
                .map(|(aor, bindings)| {
                    json!({ "aor": aor, "bindings": bindings.iter().map(binding_json).collect::<Vec<_>>() })
                })
                .collect(),
        ));
    } else {
        if rows.iter().any(|(_, bindings)| !bindings.is_empty()) {
            print!("{}", bindings_table(&rows));
        }
        for (aor, bindings) in &rows {
            if bindings.is_empty() {
                eprintln!("{aor}: not registered");
            }
        }
    }
    Ok(())
}
