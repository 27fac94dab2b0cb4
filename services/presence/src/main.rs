//! `presence`: see [`presence::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = runtime::init_tracing("presence");
    presence::command::run(clap::Parser::parse()).await
}
