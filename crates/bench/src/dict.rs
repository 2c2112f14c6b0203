//! `provtrail-bench train-dict`: trains the zstd dictionary that provtrail ships for compressing
//! stored event bodies, from realistic synthetic events. Kept here (not in the product) because it
//! only runs when the dictionary is regenerated; the output is checked in.

use std::path::PathBuf;

use provtrail::synth::{Generator, SynthOptions};

/// Arguments of `provtrail-bench train-dict`.
#[derive(Debug, clap::Args)]
pub struct DictArgs {
    /// Where to write the dictionary.
    #[arg(long, default_value = "crates/provtrail/assets/events.dict")]
    output: PathBuf,
    /// Sample events to train on.
    #[arg(long, default_value_t = 20_000)]
    samples: usize,
    /// Dictionary size in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    size: usize,
}

pub fn run(args: DictArgs) -> anyhow::Result<()> {
    // Several generators with different settings, so that the dictionary learns the structure of
    // events rather than one generator's habits.
    let mut samples = Vec::with_capacity(args.samples);
    for seed in 0..4u64 {
        let mut generator = Generator::new(&SynthOptions {
            seed: 1000 + seed,
            failure_rate: [0.0, 0.03, 0.2, 0.5][seed as usize],
            identities: 20_000,
        });
        for _ in 0..args.samples / 4 {
            samples.push(generator.next_json());
        }
    }
    let dictionary = zstd::dict::from_samples(&samples, args.size)?;
    std::fs::write(&args.output, &dictionary)?;
    eprintln!(
        "wrote a {} byte dictionary trained on {} events to {}",
        dictionary.len(),
        samples.len(),
        args.output.display()
    );
    Ok(())
}
