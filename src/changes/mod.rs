//! Changes to what Partner Center holds, and the one way each reaches the cache (SPEC §4.4).
//!
//! Above the cache and the fleet, below the listeners that learn of changes: [`invalidate`] is
//! the one path every invalidation takes — a write's, an admin purge's, one another replica
//! published, the replay after a fleet outage, Partner Center's own event notifications — carried
//! out to the end in a task of its own. [`webhook`] takes those notifications (SPEC §15.2) once
//! [`signature`] has verified them against the certificate [`certificate`] provides; [`audit`]
//! follows the audit records of changes made anywhere else (SPEC §15.3), which [`records`]
//! reads.

pub mod invalidate;

pub mod audit;

pub mod records;

pub mod webhook;

pub mod certificate;

pub mod signature;
