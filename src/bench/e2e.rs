//! `strata bench e2e`: producers and consumers at once. Every request's records carry, in the
//! first 8 bytes of each value, the time the request was due (open loop) or sent (closed loop);
//! consumers tailing the topic measure each record's age when `poll` hands it over. The
//! producers' own acknowledgement latency is reported beside it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::clock::{now_ns, secs_to_ns};
use super::consume::{self, ConsumeLoad, ConsumeMode};
use super::error::Result;
use super::host::{process_cpu, CpuUse};
use super::meter::Meter;
use super::output::{emit, open_hdr_log, watch};
use super::plot::percentile_plot;
use super::produce::{self, latency_origin_text, ProduceLoad, ProduceMeters};
use super::report::{table, Summary};
use super::workload::{
    all_finished, describe, end_offsets, join_all, json_report, measured_seconds, place_clients,
    prepare_topic, start_time, LoadConfig,
};

/// How long consumers may take, after the producers stopped, to read the last records.
pub const TAIL_DRAIN: Duration = Duration::from_secs(30);

pub fn run(cfg: &LoadConfig) -> Result<()> {
    cfg.validate()?;
    let partitions = prepare_topic(cfg)?;
    let pload = ProduceLoad::from_config(cfg, partitions, true);
    let cload = ConsumeLoad {
        broker: cfg.broker.clone(),
        topic: cfg.topic.clone(),
        partitions,
        consumers: cfg.consumers,
    };
    let names: Vec<String> = (0..cfg.producers)
        .map(|i| format!("produce-{i}"))
        .chain((0..cfg.consumers).map(|i| format!("consume-{i}")))
        .collect();
    let (cores, placement) = place_clients(&cfg.cpus, &names)?;
    let (produce_cores, consume_cores) = cores.split_at(cfg.producers);
    let mut hdr = open_hdr_log(cfg.hdr_log.as_deref(), "e2e")?;
    let (cpu_start, wall_start) = (process_cpu(), now_ns());
    let start_ns = start_time();
    let window_start = start_ns + secs_to_ns(cfg.warmup.as_secs_f64());
    let end_ns = window_start + secs_to_ns(cfg.duration.as_secs_f64());
    let e2e = Meter::new(window_start);
    let meters = ProduceMeters::new(window_start);
    let abort = Arc::new(AtomicBool::new(false));
    let ends: Arc<OnceLock<Vec<i64>>> = Arc::default();
    let mode = ConsumeMode::Tail { ends: ends.clone() };
    let deadline = end_ns + TAIL_DRAIN.as_nanos() as u64;
    // Consumers are assigned (at the log end) before the first record is produced.
    let consumers = consume::start(&cload, &mode, &e2e, consume_cores, deadline, abort.clone())?;
    let producers = produce::start(
        &pload,
        start_ns,
        end_ns,
        &meters,
        produce_cores,
        abort.clone(),
    );
    let producers = match producers {
        Ok(p) => p,
        Err(e) => {
            abort.store(true, std::sync::atomic::Ordering::Release);
            let _ = join_all(consumers);
            return Err(e);
        }
    };
    let watched = watch(
        &[("e2e", &e2e), ("produce", &meters.acks)],
        start_ns,
        window_start,
        hdr.as_mut(),
        cfg.quiet,
        || {
            if ends.get().is_none() && all_finished(&producers) {
                // Everything produced is acknowledged: the consumers read up to here.
                let _ = ends.set(end_offsets(&cfg.broker, &cfg.topic, partitions)?);
            }
            Ok(all_finished(&consumers))
        },
    );
    let (produced, consumed) = (join_all(producers), join_all(consumers));
    let cpu = CpuUse::since(cpu_start, wall_start);
    produced?;
    consumed?;
    watched?;
    if let Some(h) = hdr {
        h.finish()?;
    }
    let open_loop = cfg.rate > 0.0;
    let e2e_total = e2e.total();
    let acks_total = meters.acks.total();
    let delivered = Summary::new(
        &e2e_total,
        measured_seconds(window_start, e2e_total.last_done_ns, end_ns),
    );
    let acked = Summary::new(
        &acks_total,
        measured_seconds(window_start, acks_total.last_done_ns, end_ns),
    );
    let mut human = describe("e2e", cfg, partitions, &placement);
    human.push_str(&format!(
        "e2e latency: from each record's {} (stamped in its value) to the consumer's poll \
         returning it{}\nproduce latency: {}\n\n",
        if open_loop { "due time" } else { "send" },
        if open_loop {
            " (coordinated omission corrected)"
        } else {
            ""
        },
        latency_origin_text(open_loop, cfg.acks)
    ));
    human.push_str(&table(&[("e2e", &delivered), ("produce", &acked)]));
    if delivered.records < acked.records {
        human.push_str(&format!(
            "warning: {} records acknowledged in the window but only {} consumed\n",
            acked.records, delivered.records
        ));
    }
    if let Some(plot) = percentile_plot(&e2e_total.latency) {
        human.push_str("\ne2e ");
        human.push_str(&plot);
    }
    human.push('\n');
    let mut json = json_report("e2e", cfg, partitions, &delivered, &cpu, &placement);
    human.push_str(&meters.lag_report(open_loop, cfg.max_in_flight, &mut json));
    human.push_str(&cpu.line());
    human.push('\n');
    json["produce"] = serde_json::to_value(&acked).expect("serializes");
    json["latency_from"] = if open_loop {
        "each record's due time on the producers' timetable, to the consumer's poll"
    } else {
        "each record's send, to the consumer's poll"
    }
    .into();
    emit(&human, &json, cfg.json.as_deref())
}
