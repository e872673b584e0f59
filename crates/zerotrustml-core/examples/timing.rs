//! Quick timing of the hot kernels while developing:
//! `cargo run --release --example timing -- N D [REPS]`. Prints wall and
//! process CPU time per call (CPU time stays meaningful on a busy machine).
//! The benchmark of record is benchmarks/aggregators.py.
use std::time::Instant;
use zerotrustml_core::{rng::SplitMix64, simd, *};

fn cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn time<R>(name: &str, reps: usize, mut f: impl FnMut() -> R) {
    f();
    let (w0, c0) = (Instant::now(), cpu_s());
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    let wall = w0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    let cpu = (cpu_s() - c0) * 1e3 / reps as f64;
    println!("{name:<10} wall {wall:8.1} ms   cpu {cpu:8.1} ms");
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let n = args.first().copied().unwrap_or(100);
    let d = args.get(1).copied().unwrap_or(1_000_000);
    let reps = args.get(2).copied().unwrap_or(5);
    let mut r = SplitMix64::new(1);
    let data: Vec<f32> = (0..n * d).map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
    let rows = Rows::from_flat(&data, n, d).unwrap();
    println!("n={n} d={d} isa={:?}", simd::active());
    let full = order::batcher(n).len();
    let med = order::network_for(n, (n - 1) / 2, n / 2 + 1).len();
    println!("comparators: full {full}, median {med}");
    time("gram", reps, || gram::gram(&rows).unwrap());
    time("krum", reps, || krum(&rows, n / 4, KrumVariant::Standard).unwrap());
    time("median", reps, || median(&rows).unwrap());
    time("trimmed", reps, || trimmed_mean(&rows, n / 10).unwrap());
    time("mean", reps, || mean(&rows, None).unwrap());
}
