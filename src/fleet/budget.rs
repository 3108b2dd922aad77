//! One upstream budget and one cooldown for the whole fleet (SPEC §12.4).
//!
//! `upstream.rate_limit_rps` and `rate_limit_burst` become the fleet's, per scope, kept in
//! Redis as GCRA (one "theoretical arrival time" per scope, as redis-cell does) in one Lua
//! script that also answers whether the scope's fleet cooldown is open: one round trip per
//! upstream request, on Redis's own clock. A 429 cooldown opened on one replica is recorded
//! in Redis (with its length as expiry) before the 429 goes to the client, so every replica
//! answers `UpstreamThrottled` for the same time. When Redis does not answer, the replica keeps
//! its share of the budget alone: `rate_limit_rps` and the burst divided by the live replicas
//! last seen (at least 1), in the same GCRA form, in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::fleet::link::{Link, Query};
use crate::fleet::members::Members;
use crate::outcome::Refusal;
use crate::upstream::shield::{Refused, ScopeKey, SharedBudget};

/// KEYS: the scope's bucket, the scope's cooldown. ARGV: emission interval (ms, 0 = no
/// budget), burst, whether the cooldown applies (1). Returns {0} admitted, {1, wait ms} out of
/// budget, {2, left ms} cooldown open.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '1' then
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then return {2, left} end
end
local interval = tonumber(ARGV[1])
if interval == 0 then return {0, 0} end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - interval * tonumber(ARGV[2])
if allowed_at > now then return {1, math.ceil(allowed_at - now)} end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now + interval))
return {0, 0}
";

/// The fleet's budget and cooldowns, through this replica's link.
pub struct FleetBudget {
    link: Arc<Link>,
    members: Arc<Members>,
    name: String,
    interval_ms: f64,
    burst: u32,
    take: redis::Script,
    /// This replica's share while cut off: per scope, the theoretical arrival time in ms
    /// since `started`.
    alone: Mutex<HashMap<ScopeKey, f64>>,
    started: Instant,
}

impl FleetBudget {
    /// The fleet `name`'s budget as `upstream.*` configures it.
    pub fn new(
        link: Arc<Link>,
        members: Arc<Members>,
        name: &str,
        config: &UpstreamConfig,
    ) -> FleetBudget {
        let rps = config.rate_limit_rps;
        let burst = match config.rate_limit_burst {
            0 => rps,
            burst => burst,
        };
        FleetBudget {
            link,
            members,
            alone: Mutex::new(HashMap::new()),
            started: Instant::now(),
            name: name.to_owned(),
            interval_ms: if rps == 0 {
                0.0
            } else {
                1000.0 / f64::from(rps)
            },
            burst,
            take: redis::Script::new(TAKE),
        }
    }

    /// GCRA in memory with this replica's share of the budget (while Redis is silent).
    fn take_alone(&self, scope: ScopeKey) -> Result<(), Refused> {
        if self.interval_ms == 0.0 {
            return Ok(());
        }
        let replicas = self.members.replicas().max(1) as f64;
        let interval = self.interval_ms * replicas;
        let burst = (f64::from(self.burst) / replicas).max(1.0);
        let now = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut alone = self.alone.lock().unwrap_or_else(PoisonError::into_inner);
        if alone.len() > 4096 {
            alone.retain(|_, tat| *tat > now);
        }
        let tat = alone.get(&scope).copied().unwrap_or(now).max(now);
        let next = tat + interval;
        let allowed_at = next - interval * burst;
        if allowed_at > now {
            return Err(Refused {
                reason: Refusal::Budget,
                error: GatewayError::GatewayRateLimited {
                    retry_after: retry_after((allowed_at - now).ceil() as i64),
                },
            });
        }
        alone.insert(scope, next);
        Ok(())
    }

    fn key(&self, what: &str, scope: ScopeKey) -> String {
        format!("{}:{{{}}}:{what}:{}", self.name, self.name, scope.label())
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` says.
fn retry_after(ms: i64) -> u64 {
    (u64::try_from(ms).unwrap_or(0).div_ceil(1000)).max(1)
}

impl SharedBudget for FleetBudget {
    fn take(&self, scope: ScopeKey, cached: bool) -> BoxFuture<'_, Option<Result<(), Refused>>> {
        async move {
            let mut invocation = self.take.prepare_invoke();
            invocation
                .key(self.key("budget", scope))
                .key(self.key("cooldown", scope))
                .arg(self.interval_ms)
                .arg(self.burst)
                .arg(u8::from(cached));
            let answer = self.link.run::<Vec<i64>>(Query::Script(&invocation)).await;
            let Ok(answer) = answer else {
                return Some(self.take_alone(scope));
            };
            match answer.as_slice() {
                [0, ..] => Some(Ok(())),
                [1, wait] => Some(Err(Refused {
                    reason: Refusal::Budget,
                    error: GatewayError::GatewayRateLimited {
                        retry_after: retry_after(*wait),
                    },
                })),
                [2, left] => Some(Err(Refused {
                    reason: Refusal::Cooldown,
                    error: GatewayError::UpstreamThrottled {
                        retry_after: retry_after(*left),
                    },
                })),
                _ => None,
            }
        }
        .boxed()
    }

    fn cool(&self, scope: ScopeKey, length: Duration) -> BoxFuture<'_, ()> {
        async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key("cooldown", scope))
                .arg(1)
                .arg("PX")
                .arg(length.as_millis().max(1) as u64);
            let _ = self.link.run::<()>(Query::Cmd(&cmd)).await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(retry_after(0), 1);
        assert_eq!(retry_after(1), 1);
        assert_eq!(retry_after(1000), 1);
        assert_eq!(retry_after(1001), 2);
        assert_eq!(retry_after(-5), 1);
    }
}
