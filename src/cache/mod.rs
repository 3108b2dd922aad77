//! The cache: answering cached routes from memory, filling them once per key, keeping them.
//!
//! In the order a cached request meets them: [`lookup`] answers from an entry or waits for a
//! [`fill`], which [`ask`]s the upstream; they ask [`policy`] what an entry's age allows and
//! talk to the cache through [`tier`] only, behind which the memory [`store`] keeps entries by
//! [`key`] (its [`index`] says which it holds) and, in fleet mode, the [`shared`] tier (L2)
//! keeps them in Redis in their [`stored`] form; [`cacheability`] judges whether an upstream
//! answer may be stored.

pub mod lookup;

pub mod fill;

pub mod ask;

pub mod tier;

pub mod shared;

pub mod stored;

pub mod store;

pub mod index;

pub mod cacheability;

pub mod policy;

pub mod key;
