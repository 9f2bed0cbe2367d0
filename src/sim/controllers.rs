//! Region and rack controllers of the simulated region: not machines, but they write to
//! the same event log.
//!
//! A real 3.4.10 region's `events/?op=query` feed carries controllers' system_ids too,
//! while `GET machines/?id=<controller>` answers `[]` (maas-api.md section 7). A client
//! following the feed must cope with ids that never become machines; the simulator
//! reproduces such a feed (issue 11 item 8).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// MAAS's controller node types (`NODE_TYPE` 2, 3, 4 in `src/maasserver/enum.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerKind {
    /// A rack controller (`rack-controller`).
    RackController,
    /// A region controller (`region-controller`).
    RegionController,
    /// A region and rack controller on one host.
    RegionAndRackController,
}

impl ControllerKind {
    /// The event a controller of this kind typically logs while a region runs: boot
    /// image imports (MAAS `EVENT_TYPES.RACK_IMPORT_INFO` / `REGION_IMPORT_INFO`).
    pub fn event_type(self) -> &'static str {
        match self {
            ControllerKind::RackController => "Rack import info",
            ControllerKind::RegionController | ControllerKind::RegionAndRackController => {
                "Region import info"
            }
        }
    }
}

/// One simulated controller.
#[derive(Debug, Clone, Serialize)]
pub struct SimController {
    /// Its system_id: never a machine's, so `machines/?id=` does not know it.
    pub system_id: String,
    /// Its hostname, as its events name it.
    pub hostname: String,
    /// Region, rack or both: the event type its events carry.
    pub kind: ControllerKind,
    /// Log one event this often (as the region is used); `None`: only when asked.
    pub event_every: Option<Duration>,
    #[serde(skip)]
    pub(crate) next_event: Option<Instant>,
}

impl SimController {
    /// A controller that logs events only when asked ([`super::World::controller_event`]).
    pub fn new(system_id: &str, hostname: &str, kind: ControllerKind) -> Self {
        SimController {
            system_id: system_id.into(),
            hostname: hostname.into(),
            kind,
            event_every: None,
            next_event: None,
        }
    }

    /// Emit an event every `every` from now on.
    pub fn every(mut self, every: Duration) -> Self {
        self.event_every = Some(every);
        self
    }
}
