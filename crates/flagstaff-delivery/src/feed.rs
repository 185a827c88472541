//! One environment as SDKs see it: what is published to them (`published.rs`: the flags and
//! segments and their serialized forms, made once and shared by every request and stream), and
//! the broadcast of changes.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use flagstaff_app::{AppError, CredentialKind, SecureMode};
use flagstaff_protocol::{Flag, FlagData, Segment};
use tokio::sync::broadcast;

pub(crate) use crate::published::{Contents, Payload, Published, Stamp};

/// How many change frames a slow stream may fall behind before it is sent a fresh `put`
/// instead (the SDKs accept a `put` at any time and replace their whole store, §4.2).
const BACKLOG: usize = 64;

/// An environment: `(project key, environment key)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvironmentId {
    /// The project key.
    pub project: String,
    /// The environment key.
    pub environment: String,
}

impl fmt::Display for EnvironmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.environment)
    }
}

/// What a stream is sent.
// A frame is made once per change and shared behind an `Arc` by every stream, so the size of
// its largest variant is paid once, not per stream.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Frame {
    /// The events that take a stream from `seq - 1` to `seq`, framed for `/all` and for the
    /// flags-only `/flags` stream (empty when only segments changed), each also as one HTTP/1.1
    /// chunk for connections that write the chunked encoding themselves (`raw.rs`).
    Changes {
        seq: u64,
        all: Framed,
        flags: Framed,
        /// The same change for FDv2 streams: `put-object`/`delete-object` events and the
        /// `payload-transferred` that commits them with the new state's selector (`fdv2.rs`).
        fdv2: Framed,
        /// The OFREP change notification: "re-fetch your bulk evaluation" (`ofrep.rs`).
        ofrep: Framed,
        /// What client-side streams re-evaluate; set when any are open.
        client: Option<Box<ClientChange>>,
    },
    /// A comment line that keeps idle connections open.
    Heartbeat,
    /// Streams authorized by these credential fingerprints must end (all streams when `None`):
    /// the key was revoked, rotated out or expired, or the environment deleted. With `only`,
    /// just the streams of that format: FDv2 streams when the environment's FDv1 fallback is
    /// turned on (they reconnect, and are told to fall back).
    Close {
        fingerprints: Option<Vec<String>>,
        only: Option<crate::stream::Format>,
    },
}

/// A change as client-side streams see it: the states before and after, and the flags whose
/// result may differ for some context (the changed flags, the flags that use a changed segment
/// and the flags that have those as prerequisites). Each stream re-evaluates only these, for its
/// own context, in its own task.
#[derive(Debug)]
pub(crate) struct ClientChange {
    pub before: Arc<Published>,
    pub after: Arc<Published>,
    pub flags: Vec<String>,
    /// The `patch` events already serialized for this change, shared by every stream whose
    /// context gets the same result (`client_side/streams.rs`).
    pub patches: Mutex<HashMap<PatchKey, Bytes>>,
}

/// What a client `patch` event depends on besides the change itself (the flag, its version and
/// the environment's version are the same for every stream): the result as an SDK sees it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PatchKey {
    /// The flag's position in [`ClientChange::flags`].
    pub flag: usize,
    pub variation: usize,
    pub experiment: bool,
    /// The reason as serialized, when the event carries one.
    pub reason: Option<Vec<u8>>,
    pub prerequisites: Vec<String>,
}

impl ClientChange {
    /// How many distinct `patch` events one change keeps for sharing; past it, each stream
    /// serializes its own (a flag whose reasons differ per context, say).
    pub const MAX_SHARED_PATCHES: usize = 4096;
}

/// The SSE comment sent as a heartbeat (§4.2: any line starting with `:`).
pub(crate) const HEARTBEAT: &[u8] = b":\n\n";
/// The heartbeat as one HTTP/1.1 chunk.
pub(crate) const HEARTBEAT_CHUNK: &[u8] = b"3\r\n:\n\n\r\n";

/// Bytes to send on a stream, as they are and as one HTTP/1.1 chunk (`<hex size>\r\n` before,
/// `\r\n` after), both made once and shared by every connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Framed {
    pub plain: Bytes,
    pub chunk: Bytes,
}

impl Framed {
    pub fn new(plain: Vec<u8>) -> Framed {
        if plain.is_empty() {
            return Framed::default();
        }
        let mut chunk = Vec::with_capacity(plain.len() + 16);
        chunk.extend_from_slice(format!("{:x}\r\n", plain.len()).as_bytes());
        chunk.extend_from_slice(&plain);
        chunk.extend_from_slice(b"\r\n");
        Framed {
            plain: Bytes::from(plain),
            chunk: Bytes::from(chunk),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }
}

/// The JSON bytes of a wire value. Our wire types serialize infallibly: derived `Serialize`,
/// string keys, and no non-finite float survives parsing into a `serde_json::Value`. Sending
/// empty bytes instead would look like data to an SDK, so a failure is a bug worth a panic.
pub(crate) fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    serde_json::to_vec(value).expect("wire values serialize")
}

/// One SSE event: `event: <name>\ndata: <json>\n\n`. Our JSON never contains a line break.
pub(crate) fn sse_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// What changed in one environment, as events for every stream format.
#[derive(Debug, Default)]
struct Events {
    all: Vec<u8>,
    flags: Vec<u8>,
    /// FDv2 `put-object`/`delete-object` events, without the closing `payload-transferred`.
    fdv2: Vec<u8>,
    count: usize,
}

impl Events {
    fn patch_flag(&mut self, flag: &Flag) {
        let data = to_json(flag);
        sse_event(
            &mut self.all,
            "patch",
            &patch_data("/flags/", &flag.key, &data),
        );
        sse_event(&mut self.flags, "patch", &patch_data("/", &flag.key, &data));
        crate::fdv2::put_object(
            &mut self.fdv2,
            crate::fdv2::Kind::Flag,
            &flag.key,
            flag.version,
            &data,
        );
        self.count += 1;
    }

    fn delete_flag(&mut self, key: &str, version: u64) {
        let all =
            to_json(&serde_json::json!({"path": format!("/flags/{key}"), "version": version}));
        sse_event(&mut self.all, "delete", &all);
        let legacy = to_json(&serde_json::json!({"path": format!("/{key}"), "version": version}));
        sse_event(&mut self.flags, "delete", &legacy);
        crate::fdv2::delete_object(&mut self.fdv2, crate::fdv2::Kind::Flag, key, version);
        self.count += 1;
    }

    fn patch_segment(&mut self, segment: &Segment) {
        let object = to_json(segment);
        sse_event(
            &mut self.all,
            "patch",
            &patch_data("/segments/", &segment.key, &object),
        );
        crate::fdv2::put_object(
            &mut self.fdv2,
            crate::fdv2::Kind::Segment,
            &segment.key,
            segment.version,
            &object,
        );
        self.count += 1;
    }

    fn delete_segment(&mut self, key: &str, version: u64) {
        let data =
            to_json(&serde_json::json!({"path": format!("/segments/{key}"), "version": version}));
        sse_event(&mut self.all, "delete", &data);
        crate::fdv2::delete_object(&mut self.fdv2, crate::fdv2::Kind::Segment, key, version);
        self.count += 1;
    }
}

/// `{"path":"<prefix><key>","data":<data>}` around already serialized data.
fn patch_data(prefix: &str, key: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + prefix.len() + key.len() + 24);
    out.extend_from_slice(br#"{"path":""#);
    out.extend_from_slice(prefix.as_bytes());
    push_json_string_contents(&mut out, key);
    out.extend_from_slice(br#"","data":"#);
    out.extend_from_slice(data);
    out.push(b'}');
    out
}

/// Appends `s` as the inside of a JSON string literal.
fn push_json_string_contents(out: &mut Vec<u8>, s: &str) {
    let quoted = to_json(&s);
    out.extend_from_slice(&quoted[1..quoted.len().saturating_sub(1)]);
}

/// A change to one item, read from the store: the item as it is now, or `None` if SDKs must no
/// longer see it.
pub(crate) enum ItemChange {
    Flag(String, Option<Flag>),
    Segment(String, Option<Segment>),
}

/// An environment SDKs are using: what was last published to them and the channel of changes.
pub(crate) struct EnvFeed {
    pub id: EnvironmentId,
    /// The environment ID SDKs may see (`X-LD-EnvID`, §4.2): the client-side ID, as in
    /// LaunchDarkly where the two are the same.
    pub env_id: RwLock<String>,
    state: RwLock<Arc<Published>>,
    changes: broadcast::Sender<Arc<Frame>>,
    /// The change-feed position the data was read at.
    loaded_at: AtomicU64,
    /// The change-feed position read right after the data: every change the loaded data holds
    /// is at or below it (FDv2 catch-ups from older positions read the log up to here).
    pub settled_at: u64,
    /// FDv2 catch-ups from positions before `settled_at`, read from the change log once and
    /// shared by every SDK that reconnects from the same position.
    pub catchups: crate::fdv2::Catchups,
    /// Credentials that authorized open streams, with how many streams and when they expire.
    grants: Mutex<HashMap<String, GrantUse>>,
    /// Secure mode (§5.7): `None` when off. Re-read when environments or credentials change.
    secure_mode: RwLock<Option<Arc<SecureMode>>>,
    /// FDv2 requests are told to fall back to FDv1 (`fdv2.rs`). Re-read with secure mode.
    fdv1_fallback: std::sync::atomic::AtomicBool,
    /// Client-side streams open now; changes are prepared for them only when there are some.
    pub client_streams: AtomicUsize,
    /// The lean server-side streams, written by the fan-out thread (`direct.rs`).
    pub direct: Arc<crate::direct::DirectStreams>,
}

/// What authorized an open stream, so that the worker re-checks it the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamCredential {
    /// An SDK key, mobile key or client-side ID.
    Key(CredentialKind),
    /// An API token reading the environment for a relay (`relayEnvironment`, issue 22).
    RelayToken,
}

#[derive(Debug)]
pub(crate) struct GrantUse {
    pub kind: StreamCredential,
    pub expires_at: Option<i64>,
    pub streams: usize,
}

impl fmt::Debug for EnvFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvFeed")
            .field("id", &self.id)
            .field("seq", &self.current().seq)
            .finish_non_exhaustive()
    }
}

impl EnvFeed {
    /// Reads an environment's flags and segments from the store; `head` is the change-feed
    /// position read just before.
    pub async fn load(
        source: &crate::Source,
        id: EnvironmentId,
        head: u64,
    ) -> Result<EnvFeed, AppError> {
        let env_id = source.client_side_id(&id).await?;
        let secure_mode = source.secure_mode(&id).await?;
        let fdv1_fallback = source.fdv1_fallback(&id).await?;
        let data = source.flag_data(&id).await?;
        let settled_at = source.head().await?;
        let (changes, _) = broadcast::channel(BACKLOG);
        let selector_prefix = crate::fdv2::selector_prefix(&source.lineage(), &id);
        Ok(EnvFeed {
            settled_at,
            catchups: crate::fdv2::Catchups::default(),
            id,
            env_id: RwLock::new(env_id),
            state: RwLock::new(Arc::new(Published::from_data(
                0,
                head,
                data,
                selector_prefix,
            ))),
            changes,
            loaded_at: AtomicU64::new(head),
            grants: Mutex::new(HashMap::new()),
            secure_mode: RwLock::new(secure_mode.map(Arc::new)),
            fdv1_fallback: fdv1_fallback.into(),
            client_streams: AtomicUsize::new(0),
            direct: Arc::default(),
        })
    }

    /// The environment's secure mode, `None` when off.
    pub fn secure_mode(&self) -> Option<Arc<SecureMode>> {
        self.secure_mode
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the secure-mode setting (after environment or credential changes).
    pub fn set_secure_mode(&self, secure_mode: Option<SecureMode>) {
        *self.secure_mode.write().unwrap_or_else(|e| e.into_inner()) = secure_mode.map(Arc::new);
    }

    /// Whether FDv2 requests are told to fall back to FDv1.
    pub fn fdv1_fallback(&self) -> bool {
        self.fdv1_fallback.load(Ordering::SeqCst)
    }

    /// Turns the FDv1 fallback on or off; turning it on ends the FDv2 streams, which then
    /// reconnect and are told to fall back.
    pub fn set_fdv1_fallback(&self, on: bool) {
        if !self.fdv1_fallback.swap(on, Ordering::SeqCst) && on {
            self.close_fdv2();
        }
    }

    pub fn loaded_at(&self) -> u64 {
        self.loaded_at.load(Ordering::SeqCst)
    }

    /// What is published now.
    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Subscribes to changes. Subscribe *before* reading [`EnvFeed::current`]: frames up to the
    /// state's `seq` are then skipped, and none after it can be missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.changes.subscribe()
    }

    pub fn env_id(&self) -> String {
        self.env_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes the changed items (only those whose version grew, or that disappeared) as the
    /// state at change-feed `position`, and broadcasts their events. Returns how many events
    /// were sent. Only the change-feed worker calls this, so publications never race.
    pub fn apply(&self, changes: Vec<ItemChange>, position: u64) -> usize {
        let current = self.current();
        // The state this change makes is stamped with its `data_version` (see `next`).
        let at = position.max(current.data_version);
        let mut next = Contents {
            flags: current.flags.clone(),
            segments: current.segments.clone(),
            flag_stamps: current.flag_stamps.clone(),
            segment_stamps: current.segment_stamps.clone(),
        };
        let mut events = Events::default();
        let mut changed_flags = BTreeSet::new();
        let mut changed_segments = BTreeSet::new();
        let stamp = |deleted| Stamp {
            at,
            deleted,
            ..Stamp::default()
        };
        for change in changes {
            match change {
                ItemChange::Flag(key, Some(flag)) => {
                    if next
                        .flags
                        .get(&key)
                        .is_none_or(|old| flag.version > old.version)
                    {
                        events.patch_flag(&flag);
                        changed_flags.insert(key.clone());
                        let stamp = Stamp::flag_changed(
                            next.flag_stamps.get(&key),
                            at,
                            next.flags.get(&key).map(Arc::as_ref),
                            Some(&flag),
                            None,
                        );
                        next.flag_stamps.insert(key.clone(), stamp);
                        next.flags.insert(key, Arc::new(flag));
                    }
                }
                ItemChange::Flag(key, None) => {
                    if let Some(old) = next.flags.remove(&key) {
                        changed_flags.insert(key.clone());
                        // The store's tombstone (or the archived flag's rewritten targeting) is
                        // at least one version above what SDKs hold, and any later incarnation
                        // of the key is above that, so `old + 1` never blocks a future patch
                        // (§2.6).
                        events.delete_flag(&key, old.version + 1);
                        let stamp = Stamp::flag_changed(
                            next.flag_stamps.get(&key),
                            at,
                            Some(&old),
                            None,
                            Some(old.version + 1),
                        );
                        next.flag_stamps.insert(key, stamp);
                    }
                }
                ItemChange::Segment(key, Some(segment)) => {
                    if next
                        .segments
                        .get(&key)
                        .is_none_or(|old| segment.version > old.version)
                    {
                        events.patch_segment(&segment);
                        changed_segments.insert(key.clone());
                        next.segment_stamps.insert(key.clone(), stamp(None));
                        next.segments.insert(key, Arc::new(segment));
                    }
                }
                ItemChange::Segment(key, None) => {
                    if let Some(old) = next.segments.remove(&key) {
                        changed_segments.insert(key.clone());
                        events.delete_segment(&key, old.version + 1);
                        next.segment_stamps
                            .insert(key, stamp(Some(old.version + 1)));
                    }
                }
            }
        }
        if events.count == 0 {
            return 0;
        }
        let next = Arc::new(current.next(position, next));
        let seq = next.seq;
        crate::fdv2::payload_transferred(&mut events.fdv2, &next.selector());
        let ofrep = Framed::new(crate::ofrep::refetch_event(next.data_version));
        let client = (self.client_streams.load(Ordering::Relaxed) > 0).then(|| {
            // Compiled here, once, rather than by the first stream task to need it.
            next.snapshot();
            current.snapshot();
            Box::new(ClientChange {
                flags: next.affected_flags(&changed_flags, &changed_segments),
                before: Arc::clone(&current),
                after: Arc::clone(&next),
                patches: Mutex::default(),
            })
        });
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.send(Frame::Changes {
            seq,
            all: Framed::new(events.all),
            flags: Framed::new(events.flags),
            fdv2: Framed::new(events.fdv2),
            ofrep,
            client,
        });
        events.count
    }

    /// Compares a complete reload with what is published and applies the difference.
    pub fn apply_full(&self, data: FlagData, position: u64) -> usize {
        let current = self.current();
        let mut changes = Vec::new();
        for key in current.flags.keys() {
            if !data.flags.contains_key(key) {
                changes.push(ItemChange::Flag(key.clone(), None));
            }
        }
        for key in current.segments.keys() {
            if !data.segments.contains_key(key) {
                changes.push(ItemChange::Segment(key.clone(), None));
            }
        }
        changes.extend(
            data.flags
                .into_iter()
                .map(|(k, f)| ItemChange::Flag(k, Some(f))),
        );
        changes.extend(
            data.segments
                .into_iter()
                .map(|(k, s)| ItemChange::Segment(k, Some(s))),
        );
        self.apply(changes, position)
    }

    /// Sends a frame to every stream: those that read the broadcast, and the lean server-side
    /// streams through the fan-out thread.
    fn send(&self, frame: Frame) {
        let frame = Arc::new(frame);
        if !self.direct.is_empty() {
            crate::direct::fan_out(&self.direct, &frame);
        }
        // No receivers is not an error: polling SDKs read the new state on their next request.
        let _ = self.changes.send(frame);
    }

    pub fn heartbeat(&self) {
        self.send(Frame::Heartbeat);
    }

    /// Ends the streams authorized by these fingerprints.
    pub fn close(&self, fingerprints: Vec<String>) {
        if !fingerprints.is_empty() {
            self.send(Frame::Close {
                fingerprints: Some(fingerprints),
                only: None,
            });
        }
    }

    /// Ends every stream of this environment.
    pub fn close_all(&self) {
        self.send(Frame::Close {
            fingerprints: None,
            only: None,
        });
    }

    /// Ends every FDv2 stream of this environment.
    pub fn close_fdv2(&self) {
        self.send(Frame::Close {
            fingerprints: None,
            only: Some(crate::stream::Format::Fdv2),
        });
    }

    /// Records that a stream authorized by `fingerprint` opened.
    pub fn grant_opened(&self, fingerprint: &str, kind: StreamCredential, expires_at: Option<i64>) {
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        grants
            .entry(fingerprint.to_owned())
            .or_insert(GrantUse {
                kind,
                expires_at,
                streams: 0,
            })
            .streams += 1;
    }

    /// Records that a stream authorized by `fingerprint` closed.
    pub fn grant_closed(&self, fingerprint: &str) {
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(grant) = grants.get_mut(fingerprint) {
            grant.streams = grant.streams.saturating_sub(1);
            if grant.streams == 0 {
                grants.remove(fingerprint);
            }
        }
    }

    /// The credentials in use by open streams: `(fingerprint, kind, expiry)`.
    pub fn grants_in_use(&self) -> Vec<(String, StreamCredential, Option<i64>)> {
        let grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        grants
            .iter()
            .map(|(fp, g)| (fp.clone(), g.kind, g.expires_at))
            .collect()
    }

    /// Updates the expiry of a credential in use (a rotation gives the old key one).
    pub fn set_grant_expiry(&self, fingerprint: &str, expires_at: Option<i64>) {
        let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(grant) = grants.get_mut(fingerprint) {
            grant.expires_at = expires_at;
        }
    }
}
