//! The script provisioner: `script system_id hostname ip mac`, as argv elements.
//!
//! Nothing from MAAS ever reaches a shell: a hostname like `a;rm -rf /` arrives as one
//! argument. The script runs in its own process group so that the TTL kills it and
//! everything it started. Output is captured up to a bound, keeping the tail.

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
        cmd.arg(&job.system_id)
            .arg(&job.hostname)
            .arg(&job.ip)
            .arg(&job.mac)
            .env("MAAS_FLOW_SYSTEM_ID", &job.system_id)
            .env("MAAS_FLOW_HOSTNAME", &job.hostname)
            .env("MAAS_FLOW_IP", &job.ip)
            .env("MAAS_FLOW_MAC", &job.mac)
            .envs(job.environment())
            .env_remove("MAAS_FLOW_MAAS__API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| ProvisionError::Spawn {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let pid = child.id();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let limit = self.output_limit;
        let out_task = async move {
            match out {
                Some(o) => read_tail(o, limit).await,
                None => Vec::new(),
            }
        };
        let err_task = async move {
            match err {
                Some(e) => read_tail(e, limit).await,
                None => Vec::new(),
            }
        };
        let run = async {
            let (status, out, err) = tokio::join!(child.wait(), out_task, err_task);
            (status, out, err)
        };
        match tokio::time::timeout(self.ttl, run).await {
            Ok((Ok(status), out, err)) => {
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
            Ok((Err(e), _, _)) => Err(ProvisionError::Spawn {
                path: self.path.display().to_string(),
                reason: format!("waiting for the script: {e}"),
            }),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                Err(ProvisionError::Ttl(self.ttl))
            }
        }
    }
}

/// SIGKILL the script's whole process group.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the group we created with
        // process_group(0); it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
