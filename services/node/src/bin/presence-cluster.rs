//! `presence-cluster`: every process of the presence cluster in one
//! executable, the one the container image ships (one copy of the shared
//! code instead of four: a quarter of the size).
//!
//! The process to run is chosen by the name it is started under (the image
//! links `edge`, `presence`, `registrar` and `presence-node` to it) or by
//! its first argument:
//!
//! ```text
//! presence-cluster edge --redis-url redis://redis:6379 ...
//! edge --redis-url redis://redis:6379 ...          (through the link)
//! presence-cluster --udp 0.0.0.0:5060              (no command: the node)
//! ```

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

const COMMANDS: [&str; 4] = ["edge", "presence", "registrar", "presence-node"];

/// The command named by `argv0`'s file name, else by the first argument
/// (consumed), else the single-process node.
fn choose(mut args: Vec<OsString>) -> (String, Vec<OsString>) {
    let invoked = args
        .first()
        .and_then(|argv0| Path::new(argv0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    if COMMANDS.contains(&invoked.as_str()) {
        return (invoked, args);
    }
    // A path works as well as a name (`/usr/local/bin/edge`), so that a
    // command written for the separate executables runs unchanged.
    let named = args
        .get(1)
        .and_then(|first| Path::new(first).file_name())
        .and_then(|first| first.to_str())
        .map(|first| {
            if first == "node" {
                "presence-node"
            } else {
                first
            }
        })
        .filter(|first| COMMANDS.contains(first))
        .map(str::to_owned);
    match named {
        Some(command) => {
            // The command's own parser sees its name as argv[0].
            args.remove(0);
            (command, args)
        }
        None => ("presence-node".to_owned(), args),
    }
}

fn usage() {
    println!(
        "presence-cluster: the processes of the presence cluster in one executable.\n\n\
         Usage: presence-cluster [edge|presence|registrar|presence-node] [ARGS]...\n\
         \x20      (or start it as `edge`, `presence`, `registrar` or `presence-node`)\n\n\
         With no command it runs presence-node, the whole service in one process.\n\
         `presence-cluster <command> --help` lists a command's options.\n"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if matches!(
        args.get(1).and_then(|a| a.to_str()),
        Some("-h" | "--help" | "help")
    ) {
        usage();
        return Ok(());
    }
    let (command, args) = choose(args);
    match command.as_str() {
        "edge" => {
            let args = edge::command::Args::parse_from(args);
            let _traces = runtime::init_tracing("edge");
            edge::command::run(args).await
        }
        "presence" => {
            let args = presence::command::Args::parse_from(args);
            let _traces = runtime::init_tracing("presence");
            presence::command::run(args).await
        }
        "registrar" => {
            let args = registrar::command::Args::parse_from(args);
            let _traces = runtime::init_tracing("registrar");
            registrar::command::run(args).await
        }
        _ => {
            let args = presence_node::command::Args::parse_from(args);
            let _traces = runtime::init_tracing("presence-node");
            presence_node::command::run(args).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_comes_from_the_link_name_or_the_first_argument() {
        let (command, args) = choose(os(&["/usr/local/bin/edge", "--redis-url", "x"]));
        assert_eq!(command, "edge");
        assert_eq!(args, os(&["/usr/local/bin/edge", "--redis-url", "x"]));

        let (command, args) = choose(os(&["presence-cluster", "registrar", "--listen", "a"]));
        assert_eq!(command, "registrar");
        assert_eq!(args, os(&["registrar", "--listen", "a"]));

        let (command, args) = choose(os(&["presence-cluster", "/usr/local/bin/presence", "-h"]));
        assert_eq!(command, "presence");
        assert_eq!(args, os(&["/usr/local/bin/presence", "-h"]));

        let (command, args) = choose(os(&["presence-cluster", "node", "--help"]));
        assert_eq!(command, "presence-node");
        assert_eq!(args, os(&["node", "--help"]));

        let (command, args) = choose(os(&["presence-cluster", "--udp", "0.0.0.0:5060"]));
        assert_eq!(command, "presence-node");
        assert_eq!(args, os(&["presence-cluster", "--udp", "0.0.0.0:5060"]));
    }
}
