//! What the gateway tells its operator, kept below everything that reports into it:
//! [`metrics`] (the Prometheus registry every stage counts in) and [`logs`] (the JSON access and
//! event lines, and the subscriber that writes them).

pub mod metrics;

pub mod logs;
