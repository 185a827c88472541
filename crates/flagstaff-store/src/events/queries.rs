//! Reading the events database: series, totals, usage, SDKs, contexts, custom events, samples.
//! Each query is one indexed read; none writes.

use super::*;

impl EventStore {
    /// Evaluations of a flag per bucket and variation in `[from, to)`, oldest first.
    pub async fn evaluation_series(
        &self,
        environment: &str,
        flag: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<SeriesPoint>> {
        let sql = self.backend.sql(
            "SELECT bucket, variation, CAST(SUM(count) AS BIGINT) AS total FROM flag_evaluations \
             WHERE environment = $1 AND flag = $2 AND resolution = $3 AND bucket >= $4 AND bucket < $5 \
             GROUP BY bucket, variation ORDER BY bucket, variation",
        );
        let rows = sqlx::query(&sql)
            .bind(environment)
            .bind(flag)
            .bind(resolution.code())
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SeriesPoint {
                    bucket: row.try_get("bucket")?,
                    variation: optional_index(row.try_get("variation")?),
                    count: from_i64(row.try_get("total")?),
                })
            })
            .collect()
    }

    /// Evaluations per flag and variation since `since` (Unix ms, rounded down to the hour) in
    /// the environments of `project`, from the hour buckets.
    pub async fn variation_totals(&self, project: &str, since: i64) -> Result<Vec<VariationTotal>> {
        let sql = self.backend.sql(
            "SELECT environment, flag, variation, CAST(SUM(count) AS BIGINT) AS total FROM flag_evaluations \
             WHERE environment LIKE $1 ESCAPE '\\' AND resolution = 'h' AND bucket >= $2 \
             GROUP BY environment, flag, variation ORDER BY environment, flag, variation",
        );
        let rows = sqlx::query(&sql)
            .bind(project_prefix(project))
            .bind(Resolution::Hour.bucket(since))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(VariationTotal {
                    environment: row.try_get("environment")?,
                    flag: row.try_get("flag")?,
                    variation: optional_index(row.try_get("variation")?),
                    count: from_i64(row.try_get("total")?),
                })
            })
            .collect()
    }

    /// When each flag of `project` was first and last evaluated, per environment.
    pub async fn usage(&self, project: &str) -> Result<Vec<FlagUsage>> {
        let sql = self.backend.sql(
            "SELECT environment, flag, first_evaluated, last_evaluated, evaluations FROM flag_usage \
             WHERE environment LIKE $1 ESCAPE '\\' ORDER BY environment, flag",
        );
        let rows = sqlx::query(&sql)
            .bind(project_prefix(project))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(FlagUsage {
                    environment: row.try_get("environment")?,
                    flag: row.try_get("flag")?,
                    first_evaluated: row.try_get("first_evaluated")?,
                    last_evaluated: row.try_get("last_evaluated")?,
                    evaluations: from_i64(row.try_get("evaluations")?),
                })
            })
            .collect()
    }

    /// The SDKs that evaluated a flag in an environment, most recently seen first.
    pub async fn flag_sdks(&self, environment: &str, flag: &str) -> Result<Vec<FlagSdk>> {
        let sql = self.backend.sql(
            "SELECT environment, flag, sdk, sdk_version, last_seen, evaluations FROM flag_sdks \
             WHERE environment = $1 AND flag = $2 ORDER BY last_seen DESC, sdk, sdk_version",
        );
        let rows = sqlx::query(&sql)
            .bind(environment)
            .bind(flag)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(FlagSdk {
                    environment: row.try_get("environment")?,
                    flag: row.try_get("flag")?,
                    sdk: row.try_get("sdk")?,
                    sdk_version: row.try_get("sdk_version")?,
                    last_seen: row.try_get("last_seen")?,
                    evaluations: from_i64(row.try_get("evaluations")?),
                })
            })
            .collect()
    }

    /// The SDKs that reported to an environment, most recently seen first.
    pub async fn sdks(&self, environment: &str) -> Result<Vec<SdkReport>> {
        let sql = self.backend.sql(
            "SELECT environment, sdk, sdk_version, wrapper, platform, first_seen, last_seen FROM sdk_reports \
             WHERE environment = $1 ORDER BY last_seen DESC, sdk, sdk_version",
        );
        let rows = sqlx::query(&sql)
            .bind(environment)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SdkReport {
                    environment: row.try_get("environment")?,
                    sdk: row.try_get("sdk")?,
                    sdk_version: row.try_get("sdk_version")?,
                    wrapper: row.try_get("wrapper")?,
                    platform: row.try_get("platform")?,
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }

    /// Contexts seen in an environment, most recently seen first.
    /// The distinct kinds of the `recent` contexts seen last in an environment, most recent
    /// first: one indexed read of the kind column only (no attributes to decode).
    pub async fn recent_context_kinds(
        &self,
        environment: &str,
        recent: u32,
    ) -> Result<Vec<String>> {
        let sql = self.backend.sql(&format!(
            "SELECT kind FROM contexts_seen WHERE environment = $1 ORDER BY last_seen DESC LIMIT {}",
            recent.clamp(1, 10_000)
        ))
        .into_owned();
        let rows = sqlx::query(&sql)
            .bind(environment)
            .fetch_all(&self.pool)
            .await?;
        let mut kinds: Vec<String> = Vec::new();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }

    pub async fn contexts(
        &self,
        environment: &str,
        search: &ContextSearch,
    ) -> Result<Vec<SeenContext>> {
        let mut sql = String::from(
            "SELECT environment, kind, key, attributes, redacted, first_seen, last_seen FROM contexts_seen \
             WHERE environment = $1",
        );
        let mut next = 2;
        if search.kind.is_some() {
            sql.push_str(&format!(" AND kind = ${next}"));
            next += 1;
        }
        if search.text.is_some() {
            sql.push_str(&format!(
                " AND (LOWER(key) LIKE ${next} ESCAPE '\\' OR LOWER(attributes) LIKE ${next} ESCAPE '\\')"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY last_seen DESC, kind, key LIMIT {}",
            search.limit.clamp(1, 1000)
        ));
        let sql = self.backend.sql(&sql);
        let mut query = sqlx::query(&sql).bind(environment);
        if let Some(kind) = &search.kind {
            query = query.bind(kind);
        }
        if let Some(text) = &search.text {
            query = query.bind(like_pattern(text));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let attributes: String = row.try_get("attributes")?;
                let redacted: String = row.try_get("redacted")?;
                Ok(SeenContext {
                    environment: row.try_get("environment")?,
                    kind: row.try_get("kind")?,
                    key: row.try_get("key")?,
                    attributes: if attributes.is_empty() {
                        Value::Object(serde_json::Map::new())
                    } else {
                        serde_json::from_str(&attributes)
                            .map_err(|e| StoreError::Corrupt(format!("context attributes: {e}")))?
                    },
                    redacted: serde_json::from_str(&redacted)
                        .map_err(|e| StoreError::Corrupt(format!("redacted attributes: {e}")))?,
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }

    /// Custom events per key since `since` (Unix ms, rounded down to the hour), from the hour
    /// buckets, most frequent first.
    pub async fn custom_event_totals(
        &self,
        environment: &str,
        since: i64,
    ) -> Result<Vec<CustomEventCount>> {
        let sql = self.backend.sql(
            "SELECT event_key, CAST(SUM(count) AS BIGINT) AS total, CAST(SUM(metric_count) AS BIGINT) AS metrics, SUM(metric_sum) AS metric_sum, \
             MIN(bucket) AS first_bucket FROM custom_events \
             WHERE environment = $1 AND resolution = 'h' AND bucket >= $2 \
             GROUP BY event_key ORDER BY total DESC, event_key",
        );
        let rows = sqlx::query(&sql)
            .bind(environment)
            .bind(Resolution::Hour.bucket(since))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CustomEventCount {
                    environment: environment.to_owned(),
                    event_key: row.try_get("event_key")?,
                    resolution: Resolution::Hour,
                    bucket: row.try_get("first_bucket")?,
                    count: from_i64(row.try_get("total")?),
                    metric_count: from_i64(row.try_get("metrics")?),
                    metric_sum: row.try_get("metric_sum")?,
                })
            })
            .collect()
    }

    /// The newest samples of an environment, optionally only of one kind and key.
    pub async fn samples(
        &self,
        environment: &str,
        kind: Option<&str>,
        key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventSample>> {
        let sql = format!(
            "SELECT environment, kind, key, at, body FROM event_samples WHERE environment = $1 \
             AND ($2 = '' OR kind = $2) AND ($3 = '' OR key = $3) ORDER BY id DESC LIMIT {}",
            limit.clamp(1, 1000)
        );
        let sql = self.backend.sql(&sql);
        let rows = sqlx::query(&sql)
            .bind(environment)
            .bind(kind.unwrap_or(""))
            .bind(key.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                Ok(EventSample {
                    environment: row.try_get("environment")?,
                    kind: row.try_get("kind")?,
                    key: row.try_get("key")?,
                    at: row.try_get("at")?,
                    body: serde_json::from_str(&body)
                        .map_err(|e| StoreError::Corrupt(format!("event sample: {e}")))?,
                })
            })
            .collect()
    }
}
