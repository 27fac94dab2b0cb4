//! `registrar`: see [`registrar::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    registrar::command::run(clap::Parser::parse()).await
}
