//! Child processes of a devnet: started with their logs in files, stopped with SIGTERM (then
//! SIGKILL if they linger), and killed when dropped so that no process outlives its devnet.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

pub struct Children {
    children: Vec<(String, Child)>,
}

impl Children {
    pub fn new() -> Self {
        Self {
            children: Vec::new(),
        }
    }

    /// Starts this same binary with `args`, logging to `log`.
    pub fn spawn(
        &mut self,
        name: &str,
        args: &[String],
        envs: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<u32> {
        let executable = std::env::current_exe().context("finding the corex executable")?;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(executable);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().unwrap_or_default();
        self.children.push((name.to_owned(), child));
        Ok(pid)
    }

    /// The name of a child that has already exited, if any.
    pub fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, child)| matches!(child.try_wait(), Ok(Some(_))).then(|| name.clone()))
    }

    /// CPU seconds used so far by each running child, by name.
    pub fn cpu_seconds(&self) -> Vec<(String, f64)> {
        self.children
            .iter()
            .filter_map(|(name, child)| {
                let pid = child.id()?.to_string();
                let (own, _) = crate::cpu_time::process_cpu_seconds(&pid).ok()?;
                Some((name.clone(), own))
            })
            .collect()
    }

    /// Asks every child to stop (SIGTERM), waits up to `grace`, then kills what is left, and
    /// reaps them all so their CPU time is accounted to this process.
    pub async fn stop_all(&mut self, grace: Duration) {
        for (_, child) in &self.children {
            if let Some(pid) = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for (name, child) in &mut self.children {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                tracing::warn!(%name, "did not stop in time; killing");
                let _ = child.kill().await;
            }
        }
        self.children.clear();
    }
}
