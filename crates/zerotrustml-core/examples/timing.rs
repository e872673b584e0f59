//! Quick timing of the hot kernels: `cargo run --release --example timing -- N D`.
use std::time::Instant;
use zerotrustml_core::{rng::SplitMix64, simd, *};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (n, d) = (args.first().copied().unwrap_or(100), args.get(1).copied().unwrap_or(1_000_000));
    let mut r = SplitMix64::new(1);
    let data: Vec<f32> = (0..n * d).map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
    let rows = Rows::from_flat(&data, n, d).unwrap();
    println!("isa {:?}", simd::active());
    for _ in 0..3 {
        let t = Instant::now();
        let g = gram::gram(&rows).unwrap();
        println!("gram {:.1} ms (eps {:.2e})", t.elapsed().as_secs_f64() * 1e3, g.eps);
        let t = Instant::now();
        let a = krum(&rows, n / 4, KrumVariant::Standard).unwrap();
        println!("krum {:.1} ms sel {:?}", t.elapsed().as_secs_f64() * 1e3, a.selected);
        let t = Instant::now();
        median(&rows).unwrap();
        println!("median {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        trimmed_mean(&rows, n / 10).unwrap();
        println!("trimmed {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        mean(&rows, None).unwrap();
        println!("mean {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}
