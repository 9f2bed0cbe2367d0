//! Criterion benchmarks of the controller's own cost per machine list:
//! parsing (against serde_json merely scanning the same bytes), filtering, the
//! lifecycle decision, and dispatching a snapshot to 10,000 node actors.
//!
//! `cargo bench --bench parse`

use std::hint::black_box;

// The same allocator as the binaries, so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use maas_flow::filter::{load_spec, Filter};
use maas_flow::lifecycle::{decide, Memo, Policy, Provision};
use maas_flow::maas::stream::{parse_list, ChunkReader, Coalesce};
use maas_flow::maas::{parse_machine_list, ApiVersion};
use maas_flow::sim::render::machine_v2;
use maas_flow::sim::scenario;

/// A real-shaped `GET machines/` body of `n` machines (~10 KB each).
fn list_body(n: usize) -> Vec<u8> {
    let mut rack = scenario::rack(n);
    for (i, m) in rack.iter_mut().enumerate() {
        m.status = maas_flow::maas::NodeStatus::from_code((i % 12) as i64);
        m.zone = if i % 10 == 0 {
            "lab".into()
        } else {
            "default".into()
        };
    }
    let mut out = b"[".to_vec();
    for (i, m) in rack.iter_mut().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(machine_v2(m).as_bytes());
    }
    out.push(b']');
    out
}

/// The size of the chunks awc hands over for a large body on loopback.
const RECEIVE_CHUNK: usize = 32 * 1024;

/// Feed `chunks` through the client's body channel to `parse` on another thread, as the
/// poller does, and wait for its result.
fn received<T: Send + 'static>(
    chunks: &[Bytes],
    parse: impl FnOnce(ChunkReader) -> T + Send + 'static,
) -> T {
    let (tx, reader) = ChunkReader::channel();
    let parser = std::thread::spawn(move || parse(reader));
    let mut gather = Coalesce::default();
    for c in chunks {
        if let Some(c) = gather.push(c.clone()) {
            if tx.blocking_send(Ok(c)).is_err() {
                break;
            }
        }
    }
    if let Some(c) = gather.finish() {
        let _ = tx.blocking_send(Ok(c));
    }
    drop(tx);
    parser.join().unwrap()
}

fn parsing(c: &mut Criterion) {
    for n in [1_000usize, 10_000] {
        let body = list_body(n);
        let mut g = c.benchmark_group(format!("list_{n}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.sample_size(if n > 1000 { 10 } else { 20 });
        g.measurement_time(Duration::from_secs(if n > 1000 { 20 } else { 8 }));
        g.bench_function("ignored_any_scan", |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap())
        });
        g.bench_function("parse_machine_list", |b| {
            b.iter(|| parse_machine_list(black_box(&body), ApiVersion::V2).unwrap())
        });
        // The receive path: the body arrives as chunks on the channel the HTTP client
        // feeds, and is parsed on another thread while it arrives.
        let chunked: Vec<Bytes> = body
            .chunks(RECEIVE_CHUNK)
            .map(Bytes::copy_from_slice)
            .collect();
        g.bench_function("ignored_any_scan_streamed", |b| {
            b.iter(|| {
                received(&chunked, |r| {
                    serde_json::from_reader::<_, serde::de::IgnoredAny>(
                        std::io::BufReader::with_capacity(64 * 1024, r),
                    )
                    .unwrap()
                })
            })
        });
        g.bench_function("stream_parse_list", |b| {
            b.iter(|| received(&chunked, |r| parse_list(r, ApiVersion::V2).unwrap()))
        });
        let filter = Filter::new(load_spec(r#"{"hosts":{"include":["node-.*"],"exclude":["node-0000[0-9]"]},"zones":{"include":["default"],"exclude":[]}}"#).unwrap()).unwrap();
        g.bench_function("parse_and_filter", |b| {
            b.iter(|| {
                let p = parse_machine_list(black_box(&body), ApiVersion::V2).unwrap();
                p.machines
                    .iter()
                    .filter(|m| filter.matches(&m.hostname, m.zone_name()))
                    .count()
            })
        });
        g.finish();
    }
}

fn filtering_and_deciding(c: &mut Criterion) {
    let body = list_body(10_000);
    let parsed = parse_machine_list(&body, ApiVersion::V2).unwrap();
    let filter = Filter::new(load_spec(r#"{"hosts":{"include":["node-.*"],"exclude":["node-0000[0-9]","node-1.*5"]},"zones":{"include":["default","rack-[0-9]+"],"exclude":["quarantine"]}}"#).unwrap()).unwrap();
    c.bench_function("filter_10000_machines", |b| {
        b.iter(|| {
            parsed
                .machines
                .iter()
                .filter(|m| filter.matches(black_box(&m.hostname), m.zone_name()))
                .count()
        })
    });
    let policy = Policy {
        me: "maas-flow".into(),
        provisioning: true,
        ..Policy::default()
    };
    let memo = Memo::default();
    let now = Instant::now();
    c.bench_function("decide_10000_machines", |b| {
        b.iter(|| {
            parsed
                .machines
                .iter()
                .map(|m| decide(black_box(m), Provision::Pending, &policy, &memo, now))
                .filter(|s| s.settled())
                .count()
        })
    });
}

fn dispatch(c: &mut Criterion) {
    use actix::prelude::*;
    use maas_flow::actors::{Deps, Snapshot, Supervisor};
    use maas_flow::metrics::Metrics;
    use maas_flow::status::Board;

    let body = list_body(10_000);
    let parsed = parse_machine_list(&body, ApiVersion::V2).unwrap();
    let machines = Arc::new(parsed.machines);
    let mut g = c.benchmark_group("dispatch");
    g.sample_size(10);
    for (name, handler_only) in [
        ("snapshot_to_10000_node_actors", false),
        ("supervisor_handler_only_10000", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let machines = machines.clone();
                actix_rt::System::new().block_on(async move {
                    let metrics = Arc::new(Metrics::new());
                    // Preview mode: node actors decide and record, nothing is sent.
                    let board = Arc::new(Board::default());
                    let deps = std::rc::Rc::new(Deps::offline("maas-flow", board.clone(), metrics));
                    let filter = Arc::new(
                        Filter::new(maas_flow::filter::FilterSpec::default_zone()).unwrap(),
                    );
                    let sup = Supervisor::new(deps, filter).start();
                    let selected = machines
                        .iter()
                        .filter(|m| m.zone_name() == "default")
                        .count() as u64;
                    // First snapshot spawns the actors (not timed).
                    sup.send(Snapshot {
                        machines: machines.clone(),
                        fetched_at: Instant::now(),
                        full: true,
                    })
                    .await
                    .unwrap();
                    let wait_all = |target: u64| {
                        let board = board.clone();
                        async move {
                            while board.observations() < target {
                                tokio::task::yield_now().await;
                            }
                        }
                    };
                    sup.send(Snapshot {
                        machines: machines.clone(),
                        fetched_at: Instant::now(),
                        full: true,
                    })
                    .await
                    .unwrap();
                    wait_all(selected).await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let before = board.observations();
                        let t = Instant::now();
                        sup.send(Snapshot {
                            machines: machines.clone(),
                            fetched_at: Instant::now(),
                            full: true,
                        })
                        .await
                        .unwrap();
                        let handler = t.elapsed();
                        // Until every node actor has handled its observation and decided.
                        wait_all(before + selected).await;
                        total += if handler_only { handler } else { t.elapsed() };
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parsing, filtering_and_deciding, dispatch);
criterion_main!(benches);
