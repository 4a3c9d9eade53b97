//! Applying prunes (`Op::Prune`, "the campaign is now the set its changes
//! above version v say"): every row of the campaign older than v (NULL
//! counts as older than everything) is deleted, and each deleted member
//! gets a removal marker at v unless a newer one exists, as a REM of it
//! at v would. Rows of versions above v (the campaign's members, journaled
//! as adds just after the prune, and every later change) are not touched,
//! so a prune commutes with the rest of its batch (see `core::collapse`).
//!
//! One statement per pruned campaign: prunes are rare (a RENAME, COPY,
//! MOVE or RESTORE under another name) and each is one index range scan
//! of its campaign's rows.

use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::postgres::{sql_version, Param, Tables};
use crate::core::Change;

pub(super) async fn apply_prunes(
    transaction: &mut Transaction<'_>,
    tables: &Tables,
    prunes: &[Change<'_>],
) -> Result<(), tokio_postgres::Error> {
    let Tables { table, removed, .. } = tables;
    let sql = format!(
        "WITH gone AS (DELETE FROM {table}
                       WHERE campaign = $1 AND (version IS NULL OR version < $2)
                       RETURNING campaign, member)
         INSERT INTO {removed} AS r (campaign, member, version)
         SELECT campaign, member, $2 FROM gone
         ON CONFLICT (campaign, member) DO UPDATE
         SET version = EXCLUDED.version, removed_at = now()
         WHERE r.version < EXCLUDED.version"
    );
    for prune in prunes {
        let version = sql_version(prune.version);
        let params: [Param<'_>; 2] = [(&prune.campaign, Type::TEXT), (&version, Type::INT8)];
        transaction.query_typed(&sql, &params).await?;
    }
    Ok(())
}
