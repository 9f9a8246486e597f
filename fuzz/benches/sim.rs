//! Simulator throughput in simulated steps (actions, deliveries, timer firings) per second.
//!
//! `cargo bench -p leasedlock-fuzz --bench sim`: criterion reports "elem/s" = steps/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leasedlock_fuzz::sim;
use std::hint::black_box;

fn simulator(c: &mut Criterion) {
    let inputs: Vec<Vec<u8>> = (0..64).map(|seed| sim::seed_input(seed, 600)).collect();
    let steps: u64 = inputs
        .iter()
        .map(|i| sim::simulate(i).expect("the seeds pass").steps)
        .sum();
    let mut group = c.benchmark_group("simulator");
    group.throughput(Throughput::Elements(steps));
    group.bench_function("64 seeds x 600 bytes", |b| {
        b.iter(|| {
            for input in &inputs {
                let _ = black_box(sim::simulate(black_box(input)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, simulator);
criterion_main!(benches);
