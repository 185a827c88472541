//! The state of an environment as published to SDKs (`Published`), with the serialized forms
//! made from it once and shared by every request and stream (`Payload`, the `put` events), and
//! what FDv2 catch-ups read from it (`Stamp`). Moved out of `feed.rs`, which keeps the feed
//! itself: the broadcast, the grants and the publication of changes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flagstaff_eval::{EvalOptions, Snapshot};
use flagstaff_protocol::{Clause, Flag, FlagData, Segment};
use serde::ser::{SerializeMap, Serializer};
use sha2::{Digest, Sha256};

use crate::feed::{Framed, sse_event, to_json};

/// A serialized JSON document with its entity tag and, made on first request, its gzip form.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub json: Bytes,
    pub etag: String,
    gzip: OnceLock<Bytes>,
}

impl Payload {
    pub fn new(json: Vec<u8>) -> Payload {
        // A strong tag from the content, so that every node (and every restart) that publishes
        // the same data gives the same tag and polling SDKs keep getting `304`.
        let digest = Sha256::digest(&json);
        Payload {
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
            json: Bytes::from(json),
            gzip: OnceLock::new(),
        }
    }

    /// The gzip-compressed JSON.
    pub fn gzip(&self) -> &Bytes {
        self.gzip.get_or_init(|| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Compressing into a Vec cannot fail: its writes never do.
            #[allow(clippy::expect_used)]
            let compressed = encoder
                .write_all(&self.json)
                .and_then(|()| encoder.finish())
                .expect("gzip into memory");
            Bytes::from(compressed)
        })
    }
}

/// The state of an environment as published to SDKs at one sequence number. Immutable: a change
/// makes a new one. Big serialized forms are made on first use and shared.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Counts the changes published for this environment in this process.
    pub seq: u64,
    /// The change-feed position this state reflects. It grows with every change on every node
    /// (the store orders commits), so client-side payloads use it as their `version`: a segment
    /// or prerequisite change then still reaches SDKs that order updates by version (§5.5).
    pub data_version: u64,
    pub flags: BTreeMap<String, Arc<Flag>>,
    pub segments: BTreeMap<String, Arc<Segment>>,
    /// The flags this process published (or removed) since it loaded the environment, with the
    /// `data_version` of the state that did it: what an FDv2 catch-up sends (`fdv2.rs`).
    pub flag_stamps: BTreeMap<String, Stamp>,
    /// The same for segments.
    pub segment_stamps: BTreeMap<String, Stamp>,
    /// How this environment's FDv2 selectors start (`fdv2.rs`).
    pub selector_prefix: Arc<str>,
    /// FDv2 full transfers of this state, serialized on first use.
    pub fdv2: crate::fdv2::Transfers,
    all: OnceLock<Payload>,
    flags_only: OnceLock<Payload>,
    put_all: OnceLock<Framed>,
    put_flags: OnceLock<Framed>,
    snapshot: OnceLock<Snapshot>,
    volatile: OnceLock<Vec<String>>,
}

/// When an item last changed in this process, and how it was removed if it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The `data_version` of the state that published the change.
    pub at: u64,
    /// The version of the item's tombstone when the change removed it.
    pub deleted: Option<u64>,
    /// For a flag: the last `data_version` at which a browser (`[0]`), a mobile app (`[1]`) or a
    /// server SDK (`[2]`) stopped seeing it (its availability was turned off, or it was
    /// removed). A client-side FDv2 catch-up tells a client to delete a flag it no longer sees
    /// only when that happened after its basis; otherwise the client never had the flag, and
    /// naming it would reveal a flag the client may not see (`client_side/fdv2.rs`).
    pub hidden_at: [u64; 3],
}

impl Stamp {
    /// The index of `credential` in [`Stamp::hidden_at`].
    pub fn audience(credential: flagstaff_app::CredentialKind) -> usize {
        match credential {
            flagstaff_app::CredentialKind::ClientSide => 0,
            flagstaff_app::CredentialKind::Mobile => 1,
            flagstaff_app::CredentialKind::Sdk => 2,
        }
    }

    /// This stamp after the flag changed from `old` to `new` (`None`: removed) at `at`.
    pub fn flag_changed(
        previous: Option<&Stamp>,
        at: u64,
        old: Option<&Flag>,
        new: Option<&Flag>,
        deleted: Option<u64>,
    ) -> Stamp {
        let mut hidden_at = previous.map(|s| s.hidden_at).unwrap_or_default();
        for credential in [
            flagstaff_app::CredentialKind::ClientSide,
            flagstaff_app::CredentialKind::Mobile,
            flagstaff_app::CredentialKind::Sdk,
        ] {
            let saw = old.is_some_and(|f| credential.sees(f));
            let sees = new.is_some_and(|f| credential.sees(f));
            if saw && !sees {
                hidden_at[Stamp::audience(credential)] = at;
            }
        }
        Stamp {
            at,
            deleted,
            hidden_at,
        }
    }
}

/// Serializes a map of shared items in key order without copying them.
struct Items<'a, T>(&'a BTreeMap<String, Arc<T>>);

impl<T: serde::Serialize> serde::Serialize for Items<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, item) in self.0 {
            map.serialize_entry(key, item.as_ref())?;
        }
        map.end()
    }
}

impl Published {
    pub fn from_data(
        seq: u64,
        data_version: u64,
        data: FlagData,
        selector_prefix: String,
    ) -> Published {
        Published {
            seq,
            data_version,
            selector_prefix: selector_prefix.into(),
            flags: data
                .flags
                .into_iter()
                .map(|(k, f)| (k, Arc::new(f)))
                .collect(),
            segments: data
                .segments
                .into_iter()
                .map(|(k, s)| (k, Arc::new(s)))
                .collect(),
            ..Published::default()
        }
    }

    pub(crate) fn next(&self, data_version: u64, items: Contents) -> Published {
        Published {
            seq: self.seq + 1,
            data_version: data_version.max(self.data_version),
            flags: items.flags,
            segments: items.segments,
            flag_stamps: items.flag_stamps,
            segment_stamps: items.segment_stamps,
            selector_prefix: Arc::clone(&self.selector_prefix),
            ..Published::default()
        }
    }

    /// The FDv2 selector of this state: SDKs send it back as their `basis` (`fdv2.rs`).
    pub fn selector(&self) -> crate::fdv2::Selector {
        crate::fdv2::Selector {
            state: format!("{}{}", self.selector_prefix, self.data_version),
            version: self.data_version,
        }
    }

    /// `{"flags": {...}, "segments": {...}}`: the `/sdk/latest-all` body and the `put` data.
    pub fn all(&self) -> &Payload {
        self.all.get_or_init(|| {
            #[derive(serde::Serialize)]
            struct All<'a> {
                flags: Items<'a, Flag>,
                segments: Items<'a, Segment>,
            }
            Payload::new(to_json(&All {
                flags: Items(&self.flags),
                segments: Items(&self.segments),
            }))
        })
    }

    /// The state compiled for evaluation, on first use. Client-side evaluation enables the
    /// legacy secondary-key bucketing that LaunchDarkly applies only there (§3.8.4, §5.4).
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot.get_or_init(|| {
            let data = FlagData {
                flags: self
                    .flags
                    .iter()
                    .map(|(k, f)| (k.clone(), Flag::clone(f)))
                    .collect(),
                segments: self
                    .segments
                    .iter()
                    .map(|(k, s)| (k.clone(), Segment::clone(s)))
                    .collect(),
            };
            Snapshot::compile_with(
                &data,
                EvalOptions {
                    secondary_key_bucketing: true,
                },
            )
        })
    }

    /// The flags whose result may change when `flags` and `segments` change: those, the flags
    /// whose rules use one of those segments (directly or through other segments) and, again
    /// and again, the flags that have an affected flag as a prerequisite.
    pub fn affected_flags(
        &self,
        flags: &BTreeSet<String>,
        segments: &BTreeSet<String>,
    ) -> Vec<String> {
        fn uses_segment(clauses: &[Clause], affected: &BTreeSet<String>) -> bool {
            clauses.iter().any(|c| {
                c.op == "segmentMatch"
                    && c.values
                        .iter()
                        .any(|v| v.as_str().is_some_and(|k| affected.contains(k)))
            })
        }
        let mut segments = segments.clone();
        if !segments.is_empty() {
            loop {
                let before = segments.len();
                for (key, segment) in &self.segments {
                    if !segments.contains(key)
                        && segment
                            .rules
                            .iter()
                            .any(|r| uses_segment(&r.clauses, &segments))
                    {
                        segments.insert(key.clone());
                    }
                }
                if segments.len() == before {
                    break;
                }
            }
        }
        let mut affected = flags.clone();
        loop {
            let before = affected.len();
            for (key, flag) in &self.flags {
                if affected.contains(key) {
                    continue;
                }
                let uses = (!segments.is_empty()
                    && flag
                        .rules
                        .iter()
                        .any(|r| uses_segment(&r.clauses, &segments)))
                    || flag.prerequisites.iter().any(|p| affected.contains(&p.key));
                if uses {
                    affected.insert(key.clone());
                }
            }
            if affected.len() == before {
                break;
            }
        }
        affected.into_iter().collect()
    }

    /// The flags whose result for a context can change with no entry in the change log: those
    /// with a date clause (`before`, `after`), whose result changes as time passes, and those
    /// using a big segment, whose membership is uploaded apart from the flag data; with their
    /// dependents through segments and prerequisites. A client-side FDv2 catch-up re-sends
    /// them every time (`client_side/fdv2.rs`).
    pub fn volatile_flags(&self) -> &[String] {
        self.volatile.get_or_init(|| {
            let dated = |clauses: &[Clause]| {
                clauses
                    .iter()
                    .any(|c| matches!(c.op.as_str(), "before" | "after"))
            };
            let flags: BTreeSet<String> = self
                .flags
                .iter()
                .filter(|(_, f)| f.rules.iter().any(|r| dated(&r.clauses)))
                .map(|(k, _)| k.clone())
                .collect();
            let segments: BTreeSet<String> = self
                .segments
                .iter()
                .filter(|(_, s)| s.unbounded || s.rules.iter().any(|r| dated(&r.clauses)))
                .map(|(k, _)| k.clone())
                .collect();
            if flags.is_empty() && segments.is_empty() {
                return Vec::new();
            }
            self.affected_flags(&flags, &segments)
        })
    }

    /// `{<key>: <flag>, ...}`: the `/sdk/latest-flags` body and the legacy `/flags` put data.
    pub fn flags_only(&self) -> &Payload {
        self.flags_only
            .get_or_init(|| Payload::new(to_json(&Items(&self.flags))))
    }

    /// The `put` event that starts an `/all` stream.
    pub fn put_all(&self) -> &Framed {
        self.put_all.get_or_init(|| put_event(&self.all().json))
    }

    /// The `put` event that starts a legacy `/flags` stream.
    pub fn put_flags(&self) -> &Framed {
        self.put_flags
            .get_or_init(|| put_event(&self.flags_only().json))
    }
}

fn put_event(data: &[u8]) -> Framed {
    let mut json = Vec::with_capacity(data.len() + 24);
    json.extend_from_slice(br#"{"path":"/","data":"#);
    json.extend_from_slice(data);
    json.push(b'}');
    let mut out = Vec::with_capacity(json.len() + 24);
    sse_event(&mut out, "put", &json);
    Framed::new(out)
}

/// What the next state holds.
pub(crate) struct Contents {
    pub flags: BTreeMap<String, Arc<Flag>>,
    pub segments: BTreeMap<String, Arc<Segment>>,
    pub flag_stamps: BTreeMap<String, Stamp>,
    pub segment_stamps: BTreeMap<String, Stamp>,
}
