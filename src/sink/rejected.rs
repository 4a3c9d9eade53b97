//! Changes parked in `<table>_rejected`, read back for
//! `CAMPAIGN.REJECTED RETRY` and dropped once journaled again.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::postgres::Tables;
use crate::core::Op;

/// One parked change, and whether a newer change of its member is in the
/// database (a row or a removal marker of a greater version).
pub struct Parked {
    pub campaign: String,
    pub member: String,
    pub op: Op,
    pub version: i64,
    pub superseded: bool,
}

/// The parked changes of `campaign` (every campaign: `None`), oldest first.
pub async fn parked(
    client: &Client,
    tables: &Tables,
    campaign: Option<&str>,
) -> Result<Vec<Parked>, tokio_postgres::Error> {
    let Tables {
        table,
        removed,
        rejected,
        ..
    } = tables;
    let sql = format!(
        "SELECT j.campaign, j.member, j.op, j.version,
                EXISTS (SELECT 1 FROM {table} t WHERE t.campaign = j.campaign
                          AND t.member = j.member AND t.version > j.version)
             OR EXISTS (SELECT 1 FROM {removed} r WHERE r.campaign = j.campaign
                          AND r.member = j.member AND r.version > j.version)
         FROM {rejected} j
         WHERE $1::text IS NULL OR j.campaign = $1
         ORDER BY j.version"
    );
    let rows = client.query_typed(&sql, &[(&campaign, Type::TEXT)]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let op = Op::from_word(row.get::<_, &str>(2).as_bytes())?;
            Some(Parked {
                campaign: row.get(0),
                member: row.get(1),
                op,
                version: row.get(3),
                superseded: row.get(4),
            })
        })
        .collect())
}

/// Drops the given parked changes (journaled again, or superseded).
pub async fn forget(
    client: &Client,
    tables: &Tables,
    done: &[Parked],
) -> Result<(), tokio_postgres::Error> {
    let campaigns: Vec<&str> = done.iter().map(|p| p.campaign.as_str()).collect();
    let members: Vec<&str> = done.iter().map(|p| p.member.as_str()).collect();
    let versions: Vec<i64> = done.iter().map(|p| p.version).collect();
    let sql = format!(
        "DELETE FROM {} AS j USING unnest($1::text[], $2::text[], $3::int8[])
             AS d(campaign, member, version)
         WHERE j.campaign = d.campaign AND j.member = d.member AND j.version = d.version",
        tables.rejected
    );
    client
        .query_typed(
            &sql,
            &[
                (&campaigns, Type::TEXT_ARRAY),
                (&members, Type::TEXT_ARRAY),
                (&versions, Type::INT8_ARRAY),
            ],
        )
        .await
        .map(|_| ())
}
