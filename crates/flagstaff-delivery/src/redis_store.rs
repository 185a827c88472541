//! LaunchDarkly's Redis persistent store, written for SDKs in daemon mode (`use_ldd`): they never
//! connect to us, they read flags and segments from Redis on each evaluation (behind their own
//! cache), so what we publish must be in Redis, in the layout their Redis integrations read.
//!
//! The layout, read from the SDKs' own stores (Python `ldclient/impl/integrations/redis/
//! redis_feature_store.py`, Node `@launchdarkly/node-server-sdk-redis` `RedisCore.ts`):
//! - `{prefix}:features` and `{prefix}:segments`: hashes from key to the item's JSON, exactly as
//!   a stream `put` carries it. A deleted item is a tombstone `{"key", "version", "deleted":
//!   true}`, so that an older write arriving late cannot resurrect it.
//! - `{prefix}:$inited`: present once the store holds a complete data set. The Node SDK reads
//!   it; the Python SDK instead asks whether `{prefix}:features` exists, so an environment with no
//!   flags at all looks uninitialized to Python (as it does behind LaunchDarkly's Relay Proxy).
//! - A full write (`init`) replaces both hashes and sets `$inited` in one `MULTI`; an update
//!   writes one item only if its version is greater than the stored one. The SDKs do that check
//!   with `WATCH`; we do it in one Lua script, which Redis runs atomically, so that several
//!   Flagstaff nodes (or a node and a relay) writing the same prefix never move an item back.
//!
//! Big segments (issue 22), in the layout the SDKs' Redis big-segment stores read (Python
//! `redis_big_segment_store.py`, Node `RedisBigSegmentStore.ts`):
//! - `{prefix}:big_segment_include:{hash}` and `{prefix}:big_segment_exclude:{hash}`: sets of
//!   segment references `{segmentKey}.g{generation}` naming a context, whose key is hashed as
//!   base64(SHA-256(key));
//! - `{prefix}:big_segments_synchronized_on`: Unix milliseconds of the last synchronization;
//!   SDKs report `bigSegmentsStatus: STALE` once it is older than their `stale_after`.
//!
//! Every upload gives a big segment a new generation (`flagstaff-app` `big_segments.rs`). Before
//! a segment with a new generation is written to `{prefix}:segments`, all its members are
//! written under the new reference, so an SDK never sees a generation whose members are not
//! there yet; the previous generation's reference is taken off the set of each key still in the
//! same list (a key removed, or moved to the other list, keeps a reference to a generation no
//! segment has any more, which no SDK asks about). The synchronization time is written after every write and at every check while the
//! store is reachable, so it stops advancing when this server stops. Only the server writes
//! members: a relay holds none, and writes no synchronization time either.
//!
//! This is one more reader of a feed's published states (`feed.rs`), like a stream: a task per
//! environment subscribes, writes the state it finds, then after every frame compares the new
//! state with what it wrote and writes the difference. Redis is not the truth, the store is:
//! after any Redis error the task reconnects with backoff and writes everything again, and it
//! checks every `check_interval` that `$inited` is still there (a Redis restart without
//! persistence empties it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::Delivery;
use crate::feed::{EnvFeed, EnvironmentId, Published, to_json};

/// Where and how to write the persistent store.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` where the redis crate's TLS is
    /// built in; it is not in the default build).
    pub url: String,
    /// The key prefix of an environment, with `{project}` and `{environment}` replaced by its
    /// keys. SDKs are configured with the result (`Redis.new_feature_store(prefix=…)`).
    pub prefix: String,
    /// How often each environment checks that Redis still holds its data set.
    pub check_interval: Duration,
    /// How often the list of environments is re-read (new environments start being written,
    /// deleted ones stop).
    pub discover_interval: Duration,
}

/// The prefix template is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// Every environment would write the same keys.
    #[error(
        "--redis-prefix must contain {{project}} and {{environment}} (for example \"flagstaff:{{project}}:{{environment}}\"): every environment needs its own keys"
    )]
    PrefixWithoutPlaceholders,
    /// The URL does not parse.
    #[error("--redis-url: {0}")]
    Url(String),
}

impl RedisStoreConfig {
    /// The key prefix of one environment.
    pub fn prefix_of(&self, id: &EnvironmentId) -> String {
        self.prefix
            .replace("{project}", &id.project)
            .replace("{environment}", &id.environment)
    }
}

/// Writes an item only if it is new or its version is greater than the stored one: the SDKs'
/// own upsert rule (`old.version >= new.version` keeps the old), done atomically in Redis.
/// KEYS[1] is the hash, ARGV the item key, its version and its JSON. Returns 1 when written.
const UPSERT: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and tonumber(decoded['version']) ~= nil
     and tonumber(decoded['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Starts writing every environment of the server to Redis, and keeps doing so until the
/// process ends. Fails only on a bad configuration; Redis being down is retried.
pub fn start(delivery: Arc<Delivery>, config: RedisStoreConfig) -> Result<(), RedisStoreError> {
    if !(config.prefix.contains("{project}") && config.prefix.contains("{environment}")) {
        return Err(RedisStoreError::PrefixWithoutPlaceholders);
    }
    let client = redis::Client::open(config.url.as_str())
        .map_err(|e| RedisStoreError::Url(e.to_string()))?;
    tokio::spawn(discover(delivery, client, config));
    Ok(())
}

/// Keeps one writer task per existing environment.
async fn discover(delivery: Arc<Delivery>, client: redis::Client, config: RedisStoreConfig) {
    let mut writers: HashMap<EnvironmentId, JoinHandle<()>> = HashMap::new();
    let mut changes = delivery.source.watch();
    loop {
        match delivery.source.environment_ids().await {
            Ok(now) => {
                writers.retain(|id, task| {
                    let keep = now.contains(id);
                    if !keep {
                        // The environment is gone: its keys stay as they were last written
                        // (SDKs still configured with the prefix keep their last data).
                        task.abort();
                    }
                    keep
                });
                for id in now {
                    writers.entry(id.clone()).or_insert_with(|| {
                        tokio::spawn(write_environment(
                            Arc::clone(&delivery),
                            client.clone(),
                            config.clone(),
                            id,
                        ))
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list environments for Redis"),
        }
        // Environments come and go through commits: look again after local commits, and on
        // the interval for other nodes' commits.
        if let Ok(Err(_)) = tokio::time::timeout(config.discover_interval, changes.changed()).await
        {
            // The store stopped announcing commits (it is closing): poll on the interval.
            tokio::time::sleep(config.discover_interval).await;
        }
    }
}

/// Writes one environment's published states to Redis, for as long as the task lives.
async fn write_environment(
    delivery: Arc<Delivery>,
    client: redis::Client,
    config: RedisStoreConfig,
    id: EnvironmentId,
) {
    let prefix = config.prefix_of(&id);
    let mut backoff = Duration::from_millis(100);
    loop {
        let feed = match delivery.feed(&id).await {
            Ok(feed) => feed,
            Err(error) => {
                tracing::warn!(environment = %id, %error, "cannot load the environment for Redis");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        match mirror(&delivery, &feed, &client, &prefix, config.check_interval).await {
            Ok(()) => return,
            Err(error) => {
                metrics::counter!("flagstaff_redis_errors_total").increment(1);
                tracing::warn!(environment = %id, %prefix, %error, "Redis write failed; writing everything again after a pause");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Follows a feed into Redis until an error (or until the feed ends).
async fn mirror(
    delivery: &Delivery,
    feed: &EnvFeed,
    client: &redis::Client,
    prefix: &str,
    check_interval: Duration,
) -> redis::RedisResult<()> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys = Keys::new(prefix);
    let big_segments = BigSegmentWriter {
        delivery,
        id: &feed.id,
        prefix,
    };
    let upsert = redis::Script::new(UPSERT);
    // Subscribed before the state is read, so no change between the two is missed.
    let mut frames = feed.subscribe();
    let mut written = feed.current();
    big_segments.copy_all(&mut connection, &written).await?;
    init(&mut connection, &keys, &written).await?;
    big_segments.synchronized(&mut connection).await?;
    tracing::info!(%prefix, flags = written.flags.len(), segments = written.segments.len(), "wrote the environment to Redis");
    let mut check = tokio::time::interval(check_interval);
    check.tick().await;
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = check.tick() => {
                let inited: bool = connection.exists(&keys.inited).await?;
                if !inited {
                    tracing::warn!(%prefix, "Redis lost the data set (restarted or flushed); writing it again");
                    written = feed.current();
                    big_segments.copy_all(&mut connection, &written).await?;
                    init(&mut connection, &keys, &written).await?;
                }
                big_segments.synchronized(&mut connection).await?;
                continue;
            }
        }
        let now = feed.current();
        if Arc::ptr_eq(&now, &written) {
            continue;
        }
        big_segments
            .copy_new_generations(&mut connection, &written, &now)
            .await?;
        update(&mut connection, &keys, &upsert, &written, &now).await?;
        big_segments.synchronized(&mut connection).await?;
        written = now;
    }
}

/// Members copied per page (one pipeline).
const BIG_SEGMENT_PAGE: u32 = 10_000;

/// How the SDKs' big-segment stores find a context: base64(SHA-256(key)).
fn context_hash(key: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.as_bytes()))
}

/// The reference of a big segment's generation in the membership sets.
fn segment_ref(segment: &flagstaff_protocol::Segment) -> Option<String> {
    Some(format!("{}.g{}", segment.key, segment.generation?))
}

/// Writes one environment's big-segment members.
struct BigSegmentWriter<'a> {
    delivery: &'a Delivery,
    id: &'a EnvironmentId,
    prefix: &'a str,
}

impl BigSegmentWriter<'_> {
    /// Whether this process has members to write (the server does; a relay does not).
    fn active(&self) -> bool {
        self.delivery.source.holds_big_segment_members()
    }

    /// Copies every big segment of a state.
    async fn copy_all(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        state: &Published,
    ) -> redis::RedisResult<()> {
        if !self.active() {
            return Ok(());
        }
        for segment in state.segments.values().filter(|s| s.unbounded) {
            self.copy(connection, segment, None).await?;
        }
        Ok(())
    }

    /// Copies the big segments whose generation `after` changed (or that are new).
    async fn copy_new_generations(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        before: &Published,
        after: &Published,
    ) -> redis::RedisResult<()> {
        if !self.active() {
            return Ok(());
        }
        for (key, segment) in after.segments.iter().filter(|(_, s)| s.unbounded) {
            let old = before.segments.get(key).filter(|s| s.unbounded);
            if old.is_some_and(|old| old.generation == segment.generation) {
                continue;
            }
            self.copy(connection, segment, old.and_then(|o| segment_ref(o)))
                .await?;
        }
        Ok(())
    }

    /// Writes every member of a segment under its current reference, taking `previous` off
    /// the same keys.
    async fn copy(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        segment: &flagstaff_protocol::Segment,
        previous: Option<String>,
    ) -> redis::RedisResult<()> {
        let Some(reference) = segment_ref(segment) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut after = String::new();
        let mut copied = 0usize;
        loop {
            let page = self
                .delivery
                .source
                .big_segment_page(self.id, &segment.key, &after, BIG_SEGMENT_PAGE)
                .await
                .map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "cannot read big-segment members",
                        e.to_string(),
                    ))
                })?;
            let Some((last, _)) = page.last() else { break };
            after.clone_from(last);
            let mut pipe = redis::pipe();
            for (key, included) in &page {
                let list = if *included {
                    "big_segment_include"
                } else {
                    "big_segment_exclude"
                };
                let set = format!("{}:{list}:{}", self.prefix, context_hash(key));
                pipe.sadd(&set, &reference).ignore();
                // SDKs ask only about the current generation; taking the previous one off the
                // same set keeps the sets from growing with every upload. A key that changed
                // lists keeps the old reference in its other set, which nothing asks about.
                if let Some(previous) = &previous {
                    pipe.srem(&set, previous).ignore();
                }
            }
            pipe.query_async::<()>(connection).await?;
            copied += page.len();
            if page.len() < BIG_SEGMENT_PAGE as usize {
                break;
            }
        }
        metrics::counter!("flagstaff_redis_big_segment_members_written_total")
            .increment(copied as u64);
        tracing::info!(prefix = %self.prefix, segment = %segment.key, %reference, members = copied, elapsed_ms = started.elapsed().as_millis() as u64, "wrote big-segment members to Redis");
        Ok(())
    }

    /// Records that the members are synchronized as of now.
    async fn synchronized(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        if !self.active() {
            return Ok(());
        }
        let now = self.delivery.source.now_millis();
        connection
            .set::<_, _, ()>(format!("{}:big_segments_synchronized_on", self.prefix), now)
            .await
    }
}

/// The keys of one environment's store.
struct Keys {
    features: String,
    segments: String,
    inited: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            features: format!("{prefix}:features"),
            segments: format!("{prefix}:segments"),
            inited: format!("{prefix}:$inited"),
        }
    }
}

/// Replaces the whole data set in one transaction, as the SDKs' own `init` does.
async fn init(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    state: &Published,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.del(&keys.features).ignore();
    pipe.del(&keys.segments).ignore();
    let flags: Vec<(&str, Vec<u8>)> = state
        .flags
        .iter()
        .map(|(key, flag)| (key.as_str(), to_json(flag.as_ref())))
        .collect();
    let segments: Vec<(&str, Vec<u8>)> = state
        .segments
        .iter()
        .map(|(key, segment)| (key.as_str(), to_json(segment.as_ref())))
        .collect();
    // HSET with no fields is an error in Redis; an empty kind is simply an absent hash.
    if !flags.is_empty() {
        pipe.hset_multiple(&keys.features, &flags).ignore();
    }
    if !segments.is_empty() {
        pipe.hset_multiple(&keys.segments, &segments).ignore();
    }
    pipe.set(&keys.inited, "").ignore();
    pipe.query_async::<()>(connection).await?;
    metrics::counter!("flagstaff_redis_writes_total", "kind" => "init").increment(1);
    Ok(())
}

/// Writes what differs between two published states: changed items by version-checked upsert,
/// vanished ones as tombstones one version above what was published (the same version a stream
/// `delete` carries, which never blocks a later incarnation of the key, spec §2.6).
async fn update(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    upsert: &redis::Script,
    before: &Published,
    after: &Published,
) -> redis::RedisResult<()> {
    let mut writes = Vec::new();
    diff(&before.flags, &after.flags, |key, version, json| {
        writes.push((&keys.features, key, version, json));
    });
    diff(&before.segments, &after.segments, |key, version, json| {
        writes.push((&keys.segments, key, version, json));
    });
    for (hash, key, version, json) in writes {
        let _written: i64 = upsert
            .key(hash)
            .arg(key)
            .arg(version)
            .arg(json)
            .invoke_async(connection)
            .await?;
        metrics::counter!("flagstaff_redis_writes_total", "kind" => "upsert").increment(1);
    }
    Ok(())
}

/// An item as stored: its key, version and JSON.
trait Stored: serde::Serialize {
    fn version(&self) -> u64;
}

impl Stored for flagstaff_protocol::Flag {
    fn version(&self) -> u64 {
        self.version
    }
}

impl Stored for flagstaff_protocol::Segment {
    fn version(&self) -> u64 {
        self.version
    }
}

/// Calls `write(key, version, json)` for each item new or changed in `after`, and a tombstone
/// for each item of `before` missing from `after`.
fn diff<T: Stored>(
    before: &BTreeMap<String, Arc<T>>,
    after: &BTreeMap<String, Arc<T>>,
    mut write: impl FnMut(String, u64, Vec<u8>),
) {
    for (key, item) in after {
        let same = before.get(key).is_some_and(|old| Arc::ptr_eq(old, item));
        if !same {
            write(key.clone(), item.version(), to_json(item.as_ref()));
        }
    }
    for (key, old) in before {
        if !after.contains_key(key) {
            let version = old.version() + 1;
            let tombstone = serde_json::json!({"key": key, "version": version, "deleted": true});
            write(key.clone(), version, to_json(&tombstone));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_the_environment() {
        let config = RedisStoreConfig {
            url: "redis://127.0.0.1".into(),
            prefix: "ff:{project}:{environment}".into(),
            check_interval: Duration::from_secs(1),
            discover_interval: Duration::from_secs(1),
        };
        let id = EnvironmentId {
            project: "shop".into(),
            environment: "production".into(),
        };
        assert_eq!(config.prefix_of(&id), "ff:shop:production");
    }

    #[test]
    fn diff_writes_changes_and_tombstones() {
        let flag = |key: &str, version: u64| {
            Arc::new(flagstaff_protocol::Flag {
                key: key.into(),
                version,
                ..Default::default()
            })
        };
        let kept = flag("kept", 1);
        let before = BTreeMap::from([
            ("kept".to_owned(), Arc::clone(&kept)),
            ("changed".to_owned(), flag("changed", 1)),
            ("gone".to_owned(), flag("gone", 7)),
        ]);
        let after = BTreeMap::from([
            ("kept".to_owned(), kept),
            ("changed".to_owned(), flag("changed", 2)),
            ("new".to_owned(), flag("new", 1)),
        ]);
        let mut writes = Vec::new();
        diff(&before, &after, |key, version, json| {
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            writes.push((key, version, value));
        });
        let summary: Vec<(&str, u64, bool)> = writes
            .iter()
            .map(|(k, v, json)| (k.as_str(), *v, json["deleted"] == true))
            .collect();
        assert_eq!(
            summary,
            [("changed", 2, false), ("new", 1, false), ("gone", 8, true)]
        );
        assert_eq!(writes[2].2["key"], "gone");
        assert_eq!(writes[0].2["version"], 2);
    }
}
