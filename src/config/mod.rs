//! What the operator asked for, checked once at start-up.
//!
//! Bottom to top: [`mask`] keeps secrets out of what is printed; [`settings`] is the validated
//! [`Config`] the code runs with and the one [`ConfigError`]; [`raw`] is the configuration as
//! written (serde, exactly the keys of SPEC §2); [`fleet`] checks `[fleet]`, [`webhooks`]
//! `[webhooks]` and `[audit]`, [`logs`] `[log]`, [`validate`] every
//! other key (each error names its key, so an operator never has to guess which line was
//! wrong); [`print`] turns a [`Config`] back into loadable TOML for `check-config`; [`load`]
//! merges the layers and runs the checks.

pub mod mask;

pub mod settings;

pub mod raw;

pub mod fleet;

pub mod webhooks;

pub mod logs;

pub mod validate;

pub mod print;

pub mod load;

pub use load::{Sources, DEFAULTS_TOML, ENV_PREFIX};
pub use mask::mask_password;
pub use raw::{RawAdmin, RawCache, RawConfig, RawFleet, RawLog, RawServer, RawUpstream};
pub use settings::{
    AdminConfig, AuditConfig, CacheConfig, Config, ConfigError, FleetConfig, LogConfig, LogFormat,
    Partition, Scope, ServerConfig, UpstreamConfig, WebhooksConfig,
};
