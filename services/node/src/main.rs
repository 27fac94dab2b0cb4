//! `presence-node`: see [`presence_node::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = runtime::init_tracing("presence-node");
    presence_node::command::run(clap::Parser::parse()).await
}
