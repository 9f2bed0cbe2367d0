//! Everything that speaks to MAAS: signing ([`auth`]), the API's paths and operations
//! ([`api`]), the HTTP client ([`client`]) and the typed model parsed from its JSON
//! ([`model`], [`status`]). Nothing here decides what to do; that is `lifecycle`'s job.

pub mod api;
pub mod auth;
pub mod client;
pub mod escape;
pub mod intern;
pub mod model;
pub mod ownership;
pub mod redact;
pub mod status;
pub mod stream;

pub use api::{Api, ApiVersion, CommissionParams, DeployParams, Erase, Method, Request};
pub use auth::ApiKey;
pub use client::{ClientSettings, ErrorClass, MaasClient, MaasError};
pub use escape::Escaped;
pub use model::{parse_machine, parse_machine_list, Machine, ParsedList};
pub use ownership::Identity;
pub use status::{NodeStatus, PowerState};
