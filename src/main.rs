//! The `strata` binary: parse the command line and dispatch; the commands live in `strata::cli`.

use clap::{Parser, Subcommand};

/// strata: a thread-per-core message broker (Kafka's model on pinned cores, io_uring, O_DIRECT).
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about,
    long_about = None,
    after_help = "Quick start:\n  strata broker &\n  strata topic create orders --partitions 4\n  seq 1 10 | strata produce orders\n  strata consume orders --from-beginning --idle-timeout-ms 1000\n\n\
Client commands find the broker with --broker HOST:PORT or STRATA_BROKER [default: 127.0.0.1:9700]."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker: pinned shards serving topics over the native protocol.
    Broker(strata::server::BrokerArgs),
    /// Create, list, describe and delete topics.
    Topic(strata::cli::topic::TopicArgs),
    /// Append stdin to a topic, one record per line.
    Produce(strata::cli::produce::ProduceArgs),
    /// Print a topic's records, one per line or formatted; alone or as a consumer-group member.
    Consume(strata::cli::consume::ConsumeArgs),
    /// List, describe and delete consumer groups, and reset their offsets.
    Group(strata::cli::group::GroupArgs),
    /// Measure throughput and latency against a broker, and the machine's disk and network limits.
    Bench(strata::cli::bench::BenchArgs),
    /// Append to one partition log, read it back verified, and print what it measured.
    LogDemo(strata::cli::log_demo::LogDemoArgs),
}

fn main() {
    let cli = Cli::parse();
    strata::cli::init_logging();
    // Only the commands that run glommio executors need the preflight; client commands don't.
    let result = match cli.command {
        Command::Broker(args) => strata::server::run(args),
        Command::Topic(args) => strata::cli::topic::run(args),
        Command::Produce(args) => strata::cli::produce::run(args),
        Command::Consume(args) => strata::cli::consume::run(args),
        Command::Group(args) => strata::cli::group::run(args),
        Command::Bench(args) => strata::cli::bench::run(args),
        Command::LogDemo(args) => {
            strata::cli::preflight(1).and_then(|()| strata::cli::log_demo::run(args))
        }
    };
    if let Err(e) = result {
        eprintln!("strata: {e}");
        std::process::exit(1);
    }
}
