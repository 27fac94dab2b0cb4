//! `presence-node`: see [`presence_node::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    presence_node::command::run(clap::Parser::parse()).await
}
