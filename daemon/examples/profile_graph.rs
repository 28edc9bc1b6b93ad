//! Where tract spends a graph's time, op by op: the question to ask before optimising a
//! bundle for it (docs/PERFORMANCE.md).
//!
//! ```sh
//! cargo run --release -p hark --example profile_graph -- BUNDLE/encoder.onnx mel 1,64,1000
//! ```
//!
//! Optimises the graph for the given input shape (float32, filled with -4, a quiet log-mel),
//! runs it `HARK_PROFILE_RUNS` times (default 20) after one warm-up and prints the time per
//! run of each op type and of the `HARK_PROFILE_NODES` (default 10) slowest nodes, with the
//! share of the whole.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, input, shape] = &args[..] else {
        eprintln!("usage: profile_graph GRAPH.onnx INPUT_NAME DIM,DIM,...");
        std::process::exit(2);
    };
    let shape: Vec<usize> = shape
        .split(',')
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let runs: usize = std::env::var("HARK_PROFILE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let slowest: usize = std::env::var("HARK_PROFILE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let plan = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .model_for_path(path)?
        .with_input_names([input.as_str()])?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let x: Tensor = tract_ndarray::ArrayD::from_elem(shape.clone(), -4.0f32).into();
    plan.run(tvec![x.clone().into_tvalue()])?;

    let mut by_node: HashMap<usize, Duration> = HashMap::new();
    let started = Instant::now();
    for _ in 0..runs {
        let mut state = SimpleState::new(&plan)?;
        state.run_plan_with_eval(
            tvec![x.clone().into_tvalue()],
            |ctx, op_state, node, inputs| {
                let t0 = Instant::now();
                let out = eval(ctx, op_state, node, inputs);
                *by_node.entry(node.id).or_default() += t0.elapsed();
                out
            },
        )?;
    }
    let total = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let model = plan.model();
    let mut by_op: HashMap<String, (f64, usize)> = HashMap::new();
    for (id, d) in &by_node {
        let e = by_op
            .entry(model.node(*id).op().name().to_string())
            .or_default();
        e.0 += d.as_secs_f64() * 1e3 / runs as f64;
        e.1 += 1;
    }
    println!("{path} {shape:?}: {total:.3} ms per run ({runs} runs)\n");
    println!(
        "{:<28} {:>6} {:>10} {:>7}",
        "op", "nodes", "ms/run", "share"
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    for (op, (ms, n)) in ops {
        println!("{op:<28} {n:>6} {ms:>10.3} {:>6.1}%", 100.0 * ms / total);
    }
    println!("\nslowest nodes:");
    let mut nodes: Vec<_> = by_node.into_iter().collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.1));
    for (id, d) in nodes.into_iter().take(slowest) {
        let node = model.node(id);
        let ms = d.as_secs_f64() * 1e3 / runs as f64;
        println!("{ms:>8.3} ms  {} ({})", node.name, node.op().name());
    }
    Ok(())
}
