//! `CAMPAIGN.REJECTED RETRY [campaign]`, on a thread of its own: once every
//! change made before the call is committed, the parked changes whose
//! member has no newer change in the database are journaled anew
//! (`keyspace::retry`) and every parked change read is dropped from
//! `<table>_rejected`. Only the caller waits.

use std::collections::HashMap;

use redis_module::{BlockedClient, DetachedFromClient, RedisValue, ThreadSafeContext};
use tokio_postgres::Client;

use super::WRITE_BEHIND;
use crate::error::CampaignError;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::retry::{journal_again, Retried};
use crate::redis_glue::ffi::lock_to_propagate;
use crate::redis_glue::lock_hold::{hold_lock, Hold};
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::run_callback;
use crate::redis_glue::server_state::SERVER;
use crate::sink::health::Use;
use crate::sink::pool::POOL;
use crate::sink::postgres::Tables;
use crate::sink::rejected::{self, Parked};

pub fn start(campaign: Option<String>, client: BlockedClient) {
    let spawned = std::thread::Builder::new()
        .name("campaign-retry".into())
        .spawn(move || {
            let failed = Err(CampaignError::Internal {
                command: "CAMPAIGN.REJECTED".into(),
                detail: "a panic".into(),
            });
            let outcome = run_callback("rejected retry", failed, || retry(campaign.as_deref()));
            let reply = outcome
                .map(|count| RedisValue::Integer(count as i64))
                .map_err(CampaignError::into_redis_error);
            ThreadSafeContext::with_blocked_client(client).reply(reply);
        });
    if let Err(error) = spawned {
        log::warning(format!("cannot start the rejected retry: {error}"));
    }
}

fn retry(campaign: Option<&str>) -> Result<usize, CampaignError> {
    let redis = ThreadSafeContext::<DetachedFromClient>::new();
    let through = JOURNAL.lock(&hold_lock(&redis, Hold::Scan)).last_seq();
    if let Some(through) = through {
        WRITE_BEHIND
            .wait_until_committed(through)
            .map_err(CampaignError::Database)?;
    }
    let parked = POOL
        .run(Use::Retry, async |client: &mut Client, tables: &Tables| {
            rejected::parked(client, tables, campaign).await
        })
        .map_err(|error| CampaignError::Database(error.to_string()))?;
    let retried = newest_unsuperseded(&parked);
    let journaled = {
        let ctx = lock_to_propagate(&redis, Hold::Scan);
        if !SERVER.is_primary() {
            return Err(CampaignError::Database(
                "this node is not a primary: run CAMPAIGN.REJECTED RETRY on the primary".into(),
            ));
        }
        journal_again(&ctx, &retried)?
    };
    POOL.run(Use::Retry, async |client: &mut Client, tables: &Tables| {
        rejected::forget(client, tables, &parked).await
    })
    .map_err(|error| CampaignError::Database(error.to_string()))?;
    log::notice(format!(
        "CAMPAIGN.REJECTED RETRY journaled {journaled} of {} parked changes again (the rest \
         had newer changes)",
        parked.len()
    ));
    Ok(journaled)
}

/// The newest parked change of each member, unless the database holds a
/// newer change of it.
fn newest_unsuperseded(parked: &[Parked]) -> Vec<Retried> {
    let mut newest: HashMap<(&str, &str), &Parked> = HashMap::new();
    for change in parked {
        let slot = newest
            .entry((&change.campaign, &change.member))
            .or_insert(change);
        if change.version > slot.version {
            *slot = change;
        }
    }
    let mut chosen: Vec<&Parked> = newest
        .into_values()
        .filter(|change| !change.superseded)
        .collect();
    chosen.sort_by_key(|change| change.version);
    chosen
        .into_iter()
        .map(|change| Retried {
            campaign: change.campaign.clone(),
            member: change.member.clone(),
            op: change.op,
        })
        .collect()
}
