//! `registrar`: see [`registrar::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = runtime::init_tracing("registrar");
    registrar::command::run(clap::Parser::parse()).await
}
