//! The script provisioner: `script system_id hostname ip mac`, as argv elements.
//!
//! Nothing from MAAS ever reaches a shell: a hostname like `a;rm -rf /` arrives as one
//! argument. The script runs in its own process group so that the TTL kills it and
//! everything it started, with a scrubbed environment and the parent-death signal
//! ([`crate::child`]). Completion is the script's exit status: output is captured up
//! to a bound (keeping the tail) and read for at most [`OUTPUT_DRAIN`] after the exit,
//! so a process the script leaves in the background neither delays nor changes the
//! verdict. Such a process is not killed when the script exits; only a script still
//! running at the TTL has its whole group killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{Job, ProvisionError};

pub struct ScriptProvisioner {
    pub path: PathBuf,
    pub ttl: Duration,
    /// Bytes of stdout and of stderr kept (the tail).
    pub output_limit: usize,
    /// What the script's environment must not carry (the API key).
    pub scrub: crate::child::Scrub,
}

/// Read everything, keeping only the last `limit` bytes.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> Vec<u8> {
    let mut keep: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > limit * 2 {
                    let cut = keep.len() - limit;
                    keep.drain(..cut);
                }
            }
        }
    }
    if keep.len() > limit {
        let cut = keep.len() - limit;
        keep.drain(..cut);
    }
    keep
}

fn tail_text(out: &[u8], err: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(err).trim().to_string();
    if s.is_empty() {
        s = String::from_utf8_lossy(out).trim().to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let start = chars.len().saturating_sub(500);
    chars[start..]
        .iter()
        .collect::<String>()
        .replace('\n', " | ")
}

impl ScriptProvisioner {
    pub async fn run(&self, job: &Job) -> Result<(), ProvisionError> {
        let mut cmd = Command::new(&self.path);
        crate::child::prepare(&mut cmd, &self.scrub);
        cmd.arg(&job.system_id)
            .arg(&job.hostname)
            .arg(&job.ip)
            .arg(&job.mac)
            .env("MAAS_FLOW_SYSTEM_ID", &job.system_id)
            .env("MAAS_FLOW_HOSTNAME", &job.hostname)
            .env("MAAS_FLOW_IP", &job.ip)
            .env("MAAS_FLOW_MAC", &job.mac)
            .envs(job.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| ProvisionError::Spawn {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let pid = child.id();
        // If this run is abandoned (the actor stopped: HA stand-down), kill the whole
        // group, not only the script: nothing it started may outlive the leadership.
        let mut group = GroupGuard(pid);
        let limit = self.output_limit;
        // Output is read by its own tasks: a process the script leaves running in the
        // background keeps the pipes open, and that must not delay the verdict.
        let out_task = child
            .stdout
            .take()
            .map(|o| tokio::spawn(read_tail(o, limit)));
        let err_task = child
            .stderr
            .take()
            .map(|e| tokio::spawn(read_tail(e, limit)));
        let status = match tokio::time::timeout(self.ttl, child.wait()).await {
            Ok(Ok(status)) => {
                group.0 = None;
                status
            }
            Ok(Err(e)) => {
                if let Some(pid) = pid {
                    crate::child::kill_group(pid);
                }
                return Err(ProvisionError::Spawn {
                    path: self.path.display().to_string(),
                    reason: format!("waiting for the script: {e}"),
                });
            }
            Err(_) => {
                if let Some(pid) = pid {
                    crate::child::kill_group(pid);
                }
                for t in [out_task, err_task].into_iter().flatten() {
                    t.abort();
                }
                return Err(ProvisionError::Ttl(self.ttl));
            }
        };
        // The script has exited: its verdict stands. Take what output is already there
        // (a short drain), then stop reading.
        let out = drain(out_task).await;
        let err = drain(err_task).await;
        let tail = tail_text(&out, &err);
        if !out.is_empty() || !err.is_empty() {
            tracing::debug!(system_id = %job.system_id, stdout = %String::from_utf8_lossy(&out).trim(), stderr = %String::from_utf8_lossy(&err).trim(), "provisioning script output");
        }
        if status.success() {
            Ok(())
        } else {
            Err(ProvisionError::Exit {
                status: status.to_string(),
                tail,
            })
        }
    }
}

/// Kills the script's process group when dropped, unless the script has exited.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            crate::child::kill_group(pid);
        }
    }
}

/// How long output is still read after the script exited.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// The output a reader collected, waiting at most [`OUTPUT_DRAIN`] for it to finish.
async fn drain(task: Option<tokio::task::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    let Some(mut task) = task else {
        return Vec::new();
    };
    match tokio::time::timeout(OUTPUT_DRAIN, &mut task).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            // A background process still holds the pipe; what it writes is not ours.
            task.abort();
            Vec::new()
        }
    }
}
