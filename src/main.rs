#![deny(clippy::print_stderr)]

use clap::Parser;
use cwleak::cli::Cli;
use cwleak::exit::Exit;

fn main() {
    let cli = Cli::parse();
    let code = match cwleak::app::run(cli) {
        Ok(exit) => exit,
        Err(e) => {
            cwleak::diag!("cwleak: error: {e:#}");
            Exit::Error
        }
    };
    std::process::exit(code.code());
}
