//! `edge`: see [`edge::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    edge::command::run(clap::Parser::parse()).await
}
