//! Reads a PIDF document from a file and prints it as this crate writes it, followed by its
//! status-model summary: `cargo run -p pidf --example show -- document.xml`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: show <pidf-file>");
        return ExitCode::FAILURE;
    };
    let xml = match std::fs::read(&path) {
        Ok(xml) => xml,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match pidf::Document::parse(&xml) {
        Ok(document) => {
            print!("{}", document.to_xml());
            println!("{:?}", document.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{path}: {error}");
            ExitCode::FAILURE
        }
    }
}
