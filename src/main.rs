//! The `strata` binary: parse the command line and dispatch; the commands live in `strata::cli`.

use clap::{Parser, Subcommand};

/// strata: a thread-per-core message broker (Kafka's model on pinned cores, io_uring, O_DIRECT).
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker: pinned shards serving topics over the native protocol.
    Broker(strata::server::BrokerArgs),
    /// Append to one partition log, read it back verified, and print what it measured.
    LogDemo(strata::cli::log_demo::LogDemoArgs),
}

fn main() {
    let cli = Cli::parse();
    strata::cli::init_logging();
    let result = match cli.command {
        Command::Broker(args) => strata::server::run(args),
        Command::LogDemo(args) => {
            strata::cli::preflight(1).and_then(|()| strata::cli::log_demo::run(args))
        }
    };
    if let Err(e) = result {
        eprintln!("strata: {e}");
        std::process::exit(1);
    }
}
