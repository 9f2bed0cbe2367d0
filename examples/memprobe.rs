//! Live heap per managed machine: the parsed snapshot, then the node actors and status
//! board rows on top of it, counted by a wrapping allocator (RSS would also count what
//! the allocator keeps after a 100 MB list is freed).
//!
//! `cargo run --release --example memprobe`

use actix::prelude::*;
use maas_flow::actors::{Deps, Snapshot, Supervisor};
use maas_flow::filter::Filter;
use maas_flow::maas::{parse_machine_list, ApiVersion};
use maas_flow::metrics::Metrics;
use maas_flow::status::Board;
use std::sync::Arc;
use std::time::Instant;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering};
struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);
#[allow(unsafe_code)] // a counting global allocator is unsafe by its trait's contract.
unsafe impl GlobalAlloc for Counting {
    // SAFETY (all three): forwards to mimalloc with the caller's own arguments.
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.realloc(p, l, n)
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap in KiB.
fn live_kb() -> u64 {
    (LIVE.load(Ordering::Relaxed) / 1024) as u64
}

fn main() {
    let n = 10_000;
    let mut rack = maas_flow::sim::scenario::rack(n);
    let mut body = b"[".to_vec();
    for (i, m) in rack.iter_mut().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(maas_flow::sim::render::machine_v2(m).as_bytes());
    }
    body.push(b']');
    drop(rack);
    let r0 = live_kb();
    let parsed = parse_machine_list(&body, ApiVersion::V2).unwrap();
    let r1 = live_kb();
    println!(
        "snapshot: {:.2} KB per machine",
        (r1 - r0) as f64 / n as f64
    );
    let machines = Arc::new(parsed.machines);
    actix_rt::System::new().block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let board = Arc::new(Board::default());
        let deps = std::rc::Rc::new(Deps::offline("maas-flow", board.clone(), metrics));
        let sup = Supervisor::new(
            deps,
            Arc::new(Filter::new(maas_flow::filter::FilterSpec::default_zone()).unwrap()),
        )
        .start();
        let r2 = live_kb();
        sup.send(Snapshot {
            machines: machines.clone(),
            fetched_at: Instant::now(),
            full: true,
        })
        .await
        .unwrap();
        sup.send(Snapshot {
            machines: machines.clone(),
            fetched_at: Instant::now(),
            full: true,
        })
        .await
        .unwrap();
        while board.observations() < n as u64 {
            tokio::task::yield_now().await;
        }
        let r3 = live_kb();
        println!(
            "node actors + board rows: {:.2} KB per machine beyond the snapshot ({} rows)",
            (r3 - r2) as f64 / n as f64,
            board.len()
        );
    });
}
