//! How maas-flow starts a child process (provisioning scripts, the power helper).
//!
//! Every spawn site goes through [`prepare`], so every child gets the same three
//! guarantees:
//!
//! - **A scrubbed environment**: no variable that can carry the MAAS API key, in any
//!   spelling the configuration loader accepts (see [`Scrub`]).
//! - **Its own process group**, so that a TTL or a stop can kill the child and
//!   everything it started with one signal ([`kill_group`]).
//! - **It dies with maas-flow** (Linux): `prctl(PR_SET_PDEATHSIG, SIGKILL)` in the
//!   child before `exec`, so a SIGKILLed maas-flow leaves no script running that a
//!   restarted (or newly elected) maas-flow would start again. The kernel delivers the
//!   signal when the *thread* that forked the child exits; maas-flow spawns children
//!   from its actor threads, which live as long as the process. Only the direct child
//!   gets the signal: processes the script itself starts (its own children) are in its
//!   process group but are not killed by a SIGKILL of maas-flow.
//!
//! The two unavoidable `unsafe` calls (`prctl` in `pre_exec`, `kill` of a group) live
//! here and nowhere else.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};

/// Secrets at least this long are withheld wherever they appear inside a value.
const MIN_CONTAINED: usize = 8;

/// What must never reach a child: the API key, whole or its secret part.
#[derive(Clone, Default)]
pub struct Scrub {
    /// Values that must not appear in a child's environment (the key, its secret).
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrub({} secrets)", self.secrets.len())
    }
}

impl Scrub {
    /// Scrub the key given as `consumer:token:secret`, its secret, and every variable
    /// named like one that can carry a key.
    pub fn for_key(key: &crate::maas::ApiKey) -> Self {
        let whole = key.expose();
        let secret = whole.rsplit(':').next().unwrap_or_default().to_string();
        Scrub {
            secrets: [whole, secret]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Whether a variable must be withheld from children: its name can carry a key in
    /// any spelling (`MAAS_FLOW_*API_KEY*` case-insensitively, `MAAS_API_KEY`), or its
    /// value is or contains the key or its secret.
    pub fn withholds(&self, name: &OsStr, value: &OsStr) -> bool {
        let n = name.to_string_lossy().to_ascii_uppercase();
        if (n.starts_with("MAAS_FLOW") && n.contains("API_KEY")) || n.contains("MAAS_API_KEY") {
            return true;
        }
        let v = value.to_string_lossy();
        // A short secret (only test keys have one) would match unrelated values by
        // chance: it is withheld only where it is the whole value.
        self.secrets.iter().any(|s| {
            if s.len() >= MIN_CONTAINED {
                v.contains(s.as_str())
            } else {
                v == s.as_str()
            }
        })
    }

    /// The environment a child starts with: ours, minus what [`Scrub::withholds`].
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        std::env::vars_os()
            .filter(|(k, v)| !self.withholds(k, v))
            .collect()
    }
}

/// Give `cmd` a scrubbed environment, its own process group and the parent-death
/// signal. Call before adding the child's own variables.
pub fn prepare(cmd: &mut tokio::process::Command, scrub: &Scrub) {
    cmd.env_clear();
    cmd.envs(scrub.environment());
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // The pid of the process that forks, read before the fork: if it is already
        // gone when the child runs, the parent-death signal would never come.
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit); it touches no memory
        // shared with the parent besides the copied `parent` integer.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died between fork and prctl: do not run orphaned.
                if libc::getppid() as u32 != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
    }
}

/// SIGKILL a child's whole process group (the child and everything it started).
pub fn kill_group(pid: u32) {
    // pid 0 or 1 would signal our own group or everyone: never.
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 1 {
            // SAFETY: kill(2) with a negative pid signals the group that `prepare` gave
            // the child (process_group(0) makes its pgid its pid); no memory is touched.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withholds_every_spelling_and_the_value() {
        let key = crate::maas::ApiKey::parse("ck:tk:s3cr3t-long").unwrap();
        let s = Scrub::for_key(&key);
        for name in [
            "MAAS_FLOW_MAAS__API_KEY",
            "MAAS_FLOW_maas__api_key",
            "maas_flow_Maas__Api_Key",
            "MAAS_API_KEY",
            "MAAS_FLOW_MAAS__API_KEY_FILE",
        ] {
            assert!(s.withholds(OsStr::new(name), OsStr::new("x")), "{name}");
        }
        assert!(s.withholds(OsStr::new("OTHER"), OsStr::new("ck:tk:s3cr3t-long")));
        assert!(s.withholds(OsStr::new("OTHER"), OsStr::new("Bearer s3cr3t-long!")));
        assert!(!s.withholds(OsStr::new("PATH"), OsStr::new("/usr/bin")));
        assert!(!s.withholds(OsStr::new("MAAS_FLOW_HOSTNAME"), OsStr::new("n1")));
        let short = Scrub::for_key(&crate::maas::ApiKey::parse("a:b:c").unwrap());
        assert!(!short.withholds(OsStr::new("PATH"), OsStr::new("/usr/local/bin")));
        assert!(short.withholds(OsStr::new("X"), OsStr::new("c")));
    }
}
