//! `edge`: see [`edge::command`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = runtime::init_tracing("edge");
    edge::command::run(clap::Parser::parse()).await
}
