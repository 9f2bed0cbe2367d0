//! MAAS `NODE_STATUS`: the integer MAAS reports, its label, and its filter name.
//!
//! MAAS keys everything on the integer (`src/maascommon/enums/node.py`); labels are for
//! people. A status this build does not know is kept as `Unknown(n)` so a newer MAAS
//! never crashes the controller (the original tool indexed a table and panicked above 15).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! node_statuses {
    ($( $variant:ident = $code:literal, $label:literal, $api:literal; )*) => {
        /// A machine's status as MAAS reports it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum NodeStatus {
            $( $variant, )*
            /// A number this build does not know (a newer MAAS); left alone.
            Unknown(i64),
        }

        impl NodeStatus {
            /// Every status MAAS defines today, in numeric order.
            pub const ALL: &'static [NodeStatus] = &[ $( NodeStatus::$variant, )* ];

            pub fn from_code(code: i64) -> Self {
                match code {
                    $( $code => NodeStatus::$variant, )*
                    other => NodeStatus::Unknown(other),
                }
            }

            pub fn code(self) -> i64 {
                match self {
                    $( NodeStatus::$variant => $code, )*
                    NodeStatus::Unknown(n) => n,
                }
            }

            /// MAAS's sentence-case label (`NODE_STATUS_LABELS`), as shown in its UI.
            pub fn label(self) -> &'static str {
                match self {
                    $( NodeStatus::$variant => $label, )*
                    NodeStatus::Unknown(_) => "Unknown",
                }
            }

            /// The lowercase enum name the `status=` list filter accepts.
            pub fn api_name(self) -> Option<&'static str> {
                match self {
                    $( NodeStatus::$variant => Some($api), )*
                    NodeStatus::Unknown(_) => None,
                }
            }

            pub fn from_api_name(name: &str) -> Option<Self> {
                match name {
                    $( $api => Some(NodeStatus::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

node_statuses! {
    New = 0, "New", "new";
    Commissioning = 1, "Commissioning", "commissioning";
    FailedCommissioning = 2, "Failed commissioning", "failed_commissioning";
    Missing = 3, "Missing", "missing";
    Ready = 4, "Ready", "ready";
    Reserved = 5, "Reserved", "reserved";
    Deployed = 6, "Deployed", "deployed";
    Retired = 7, "Retired", "retired";
    Broken = 8, "Broken", "broken";
    Deploying = 9, "Deploying", "deploying";
    Allocated = 10, "Allocated", "allocated";
    FailedDeployment = 11, "Failed deployment", "failed_deployment";
    Releasing = 12, "Releasing", "releasing";
    FailedReleasing = 13, "Releasing failed", "failed_releasing";
    DiskErasing = 14, "Disk erasing", "disk_erasing";
    FailedDiskErasing = 15, "Failed disk erasing", "failed_disk_erasing";
    RescueMode = 16, "Rescue mode", "rescue_mode";
    EnteringRescueMode = 17, "Entering rescue mode", "entering_rescue_mode";
    FailedEnteringRescueMode = 18, "Failed to enter rescue mode", "failed_entering_rescue_mode";
    ExitingRescueMode = 19, "Exiting rescue mode", "exiting_rescue_mode";
    FailedExitingRescueMode = 20, "Failed to exit rescue mode", "failed_exiting_rescue_mode";
    Testing = 21, "Testing", "testing";
    FailedTesting = 22, "Failed testing", "failed_testing";
}

impl NodeStatus {
    /// API 1.0 folded every "owned" status into 6 and put the real one in `substatus`.
    pub fn folded_v1(self) -> NodeStatus {
        use NodeStatus::*;
        match self {
            Allocated | Deploying | Deployed | FailedDeployment | Releasing | DiskErasing
            | FailedReleasing | FailedDiskErasing => Deployed,
            other => other,
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeStatus::Unknown(n) => write!(f, "Unknown({n})"),
            s => f.write_str(s.label()),
        }
    }
}

impl Serialize for NodeStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for NodeStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64::deserialize(d).map(NodeStatus::from_code)
    }
}

/// MAAS's cached `power_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PowerState {
    On,
    Off,
    #[default]
    Unknown,
    Error,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
            PowerState::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "on" => PowerState::On,
            "off" => PowerState::Off,
            "error" => PowerState::Error,
            _ => PowerState::Unknown,
        }
    }
}

impl<'de> Deserialize<'de> for PowerState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        Ok(s.map(|s| PowerState::parse(&s)).unwrap_or_default())
    }
}

impl Serialize for PowerState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_labels_match_maas() {
        for (i, s) in NodeStatus::ALL.iter().enumerate() {
            assert_eq!(s.code(), i as i64);
            assert_eq!(NodeStatus::from_code(i as i64), *s);
            assert_eq!(NodeStatus::from_api_name(s.api_name().unwrap()), Some(*s));
        }
        assert_eq!(NodeStatus::ALL.len(), 23);
        assert_eq!(NodeStatus::from_code(13).label(), "Releasing failed");
        assert_eq!(NodeStatus::from_code(99), NodeStatus::Unknown(99));
        assert_eq!(NodeStatus::Unknown(99).to_string(), "Unknown(99)");
    }

    #[test]
    fn v1_folding_matches_maas_1_9() {
        assert_eq!(NodeStatus::Allocated.folded_v1(), NodeStatus::Deployed);
        assert_eq!(NodeStatus::Ready.folded_v1(), NodeStatus::Ready);
    }
}
