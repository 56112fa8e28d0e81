//! CPU time of this process and of its reaped children, from `/proc/self/stat` (Linux).

use anyhow::Context;

/// `(own, children)` CPU seconds of this process: user + system time, children counted once
/// reaped.
pub fn cpu_seconds() -> anyhow::Result<(f64, f64)> {
    process_cpu_seconds("self")
}

/// `(own, reaped children)` CPU seconds of process `pid` ("self" for this one).
pub fn process_cpu_seconds(pid: &str) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&path).with_context(|| format!("reading {path} (Linux only)"))?;
    // Fields after the parenthesised command name; utime is field 14 overall.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("parsing /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // Linux reports these in clock ticks of 1/100 s (USER_HZ).
    let ticks = 100.0;
    let own = (field(11)? + field(12)?) / ticks;
    let children = (field(13)? + field(14)?) / ticks;
    Ok((own, children))
}
