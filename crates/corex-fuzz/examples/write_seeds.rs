//! Writes every fuzz target's seeds as a libFuzzer corpus: `<dir>/<target>/seed-<n>`, where
//! `<dir>` is the first argument (default `fuzz/corpus`, cargo fuzz's own corpus folder when run
//! from the repository root). `cargo run --release -p corex-fuzz --example write_seeds`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    for target in corex_fuzz::TARGETS {
        let folder = dir.join(target.name);
        std::fs::create_dir_all(&folder)?;
        let seeds = (target.seeds)();
        for (index, seed) in seeds.iter().enumerate() {
            std::fs::write(folder.join(format!("seed-{index}")), seed)?;
        }
        println!(
            "{}: {} seeds in {}",
            target.name,
            seeds.len(),
            folder.display()
        );
    }
    Ok(())
}
