//! `presence`: see [`presence::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    presence::command::run(clap::Parser::parse()).await
}
