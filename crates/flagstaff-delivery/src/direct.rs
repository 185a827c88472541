//! Server-side SDK streams written from one place (issue 23, point 5).
//!
//! Every `/all` and `/flags` stream of an environment receives the same bytes for a change,
//! already framed as one HTTP/1.1 chunk (`feed.rs`). Waking one task per stream to copy those
//! bytes into its socket costs a task switch, a scheduler queue and a waker per stream; at
//! 10,000 streams that tail, not the copying, was what kept the last stream waiting. So the
//! streams served on the lean path (`raw.rs`) are registered here, and one thread, the
//! *fan-out*, writes each frame to every registered socket with a non-blocking `try_write`
//! (a frame for many streams is split among one scoped thread per core, and finished before
//! the next frame starts).
//!
//! A socket whose send buffer is full (a slow or stalled reader) cannot take the frame at once:
//! what is left of it is queued for the stream's own task, which writes it when the socket is
//! writable and keeps the socket until its queue is empty. While a task has the socket, the
//! fan-out only queues, so bytes are never interleaved and a stream always sees its frames in
//! order. A queue that grows past [`MAX_QUEUED`] frames is not grown further: once the task
//! has written what is queued, it sends the whole current state as a `put` (§4.2), which SDKs
//! apply as a replacement of their store, exactly as the broadcast path does for a lagging
//! stream.
//!
//! Sequence numbers keep the opening `put` and the changes apart: a stream registers *before*
//! it reads the state it starts from, and every frame at or below that state's sequence number
//! is skipped, so no change is missed and none is sent twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::feed::{EnvFeed, Frame, HEARTBEAT_CHUNK};
use crate::stream::{Format, OpenStream, Opening};

/// How many frames a stream's task may have queued before the rest are replaced by a `put`.
const MAX_QUEUED: usize = 64;
/// A frame for more streams than this is written by several threads at once, one per core
/// up to [`MAX_FAN_OUT_THREADS`]: most of a write is the kernel's work (on loopback, the
/// receiving end's too), and one thread would leave the other cores idle meanwhile.
const STREAMS_PER_EXTRA_THREAD: usize = 2048;
const MAX_FAN_OUT_THREADS: usize = 4;

/// The streams of one environment that the fan-out writes to.
#[derive(Default)]
pub(crate) struct DirectStreams {
    next_id: AtomicU64,
    streams: Mutex<HashMap<u64, Arc<DirectStream>>>,
}

impl DirectStreams {
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<DirectStream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The streams registered now, for one frame's fan-out. Copied, so that streams opening
    /// and closing meanwhile never wait for a whole fan-out.
    fn registered(&self) -> Vec<Arc<DirectStream>> {
        self.lock().values().cloned().collect()
    }
}

/// One lean server-side stream: its socket, shared by the fan-out and the stream's task.
pub(crate) struct DirectStream {
    socket: TcpStream,
    format: Format,
    open: OpenStream,
    state: Mutex<Pending>,
    /// Wakes the stream's task: bytes were queued for it, or the stream must end.
    wake: Notify,
}

/// Who may write next, and what is waiting.
#[derive(Default)]
struct Pending {
    /// The sequence number of the last change this stream was given (written or queued).
    seen: u64,
    /// Bytes the stream's task must write, in order.
    queue: VecDeque<Bytes>,
    /// The stream's task has the socket: the fan-out only queues.
    task_writes: bool,
    /// Frames were dropped from a full queue: the task sends the whole state next.
    overflowed: bool,
    /// The stream must end (its credential was revoked, the server stops, or it failed).
    closed: bool,
}

impl DirectStream {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `bytes` to this stream: written at once when the task does not have the socket
    /// and the socket takes them, queued for the task otherwise.
    fn give(&self, pending: &mut Pending, bytes: &Bytes) {
        if pending.task_writes {
            if pending.queue.len() >= MAX_QUEUED {
                pending.overflowed = true;
            } else {
                pending.queue.push_back(bytes.clone());
            }
            return;
        }
        match self.socket.try_write(bytes) {
            Ok(written) if written == bytes.len() => {}
            Ok(written) => self.defer(pending, bytes.slice(written..)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.defer(pending, bytes.clone())
            }
            Err(_) => {
                pending.closed = true;
                self.wake.notify_one();
            }
        }
    }

    fn defer(&self, pending: &mut Pending, rest: Bytes) {
        metrics::counter!("flagstaff_stream_writes_deferred_total").increment(1);
        pending.queue.push_back(rest);
        pending.task_writes = true;
        self.wake.notify_one();
    }

    /// Applies one frame of its environment's broadcast to this stream.
    fn apply(&self, frame: &Frame) {
        let mut pending = self.pending();
        if pending.closed {
            return;
        }
        match frame {
            Frame::Changes { seq, .. } => {
                if *seq <= pending.seen {
                    return; // Already in the `put` this stream started with.
                }
                pending.seen = *seq;
                if let Some(framed) = self.format.changes(frame)
                    && !framed.is_empty()
                {
                    self.give(&mut pending, &framed.chunk);
                }
            }
            Frame::Heartbeat => {
                // A stream with bytes waiting needs no heartbeat.
                if !pending.task_writes {
                    self.give(&mut pending, &Bytes::from_static(HEARTBEAT_CHUNK));
                }
            }
            Frame::Close { .. } => {
                if self.open.is_closed_by(frame, Some(self.format)) {
                    pending.closed = true;
                    self.wake.notify_one();
                }
            }
        }
    }
}

/// A frame to write to an environment's streams.
struct Job {
    streams: Arc<DirectStreams>,
    frame: Arc<Frame>,
}

/// Queues `frame` for the fan-out thread, which writes it to every stream in `streams`.
///
/// One thread for the whole process takes the frames in the order they were published (a
/// change must never overtake an earlier one on a stream), and the async workers stay free
/// for requests meanwhile. It may split one frame's streams among helper threads, but waits
/// for them before it takes the next frame.
pub(crate) fn fan_out(streams: &Arc<DirectStreams>, frame: &Arc<Frame>) {
    static FAN_OUT: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let sender = FAN_OUT.get_or_init(|| {
        let (sender, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("flagstaff-fan-out".into())
            .spawn(move || {
                let threads = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_FAN_OUT_THREADS);
                for job in jobs {
                    let streams = job.streams.registered();
                    // Each frame is written to every stream before the next frame starts, so
                    // splitting one frame's streams among threads keeps every stream's order.
                    if threads < 2 || streams.len() < STREAMS_PER_EXTRA_THREAD {
                        for stream in &streams {
                            stream.apply(&job.frame);
                        }
                        continue;
                    }
                    let share = streams.len().div_ceil(threads);
                    std::thread::scope(|scope| {
                        let mut parts = streams.chunks(share);
                        let own = parts.next().unwrap_or_default();
                        for part in parts {
                            let frame = &job.frame;
                            scope.spawn(move || {
                                for stream in part {
                                    stream.apply(frame);
                                }
                            });
                        }
                        for stream in own {
                            stream.apply(&job.frame);
                        }
                    });
                }
            })
            .expect("start the stream fan-out thread");
        sender
    });
    let job = Job {
        streams: Arc::clone(streams),
        frame: Arc::clone(frame),
    };
    // The thread never ends, so sending cannot fail.
    let _ = sender.send(job);
}

/// Serves an admitted lean server-side stream whose response head is written: registers it
/// with the fan-out, sends the opening `put`, then writes what the fan-out could not, until
/// the stream ends or the client leaves.
pub(crate) async fn serve(socket: TcpStream, open: OpenStream, format: Format, opening: Opening) {
    let feed = Arc::clone(&open.feed);
    let streams = Arc::clone(&feed.direct);
    let stream = Arc::new(DirectStream {
        socket,
        format,
        open,
        state: Mutex::new(Pending {
            task_writes: true,
            ..Pending::default()
        }),
        wake: Notify::new(),
    });
    let id = streams.next_id.fetch_add(1, Ordering::Relaxed);
    // Registered first, then the state is read: every later change reaches the queue.
    streams.lock().insert(id, Arc::clone(&stream));
    let _registered = Registered {
        streams: &streams,
        id,
    };
    start_with(&stream, &feed, &opening);
    drop(opening);
    run(&stream, &feed).await;
}

/// Removes a stream from the fan-out when its task ends, however it ends.
struct Registered<'a> {
    streams: &'a DirectStreams,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

/// Replaces whatever is queued with the whole current state, as of its sequence number (or,
/// for an FDv2 stream that starts from a basis, with what it lacks of it).
fn start_with(stream: &DirectStream, feed: &EnvFeed, opening: &Opening) {
    let mut pending = stream.pending();
    let state = feed.current();
    let put = opening.framed(stream.format, &state);
    // Everything queued so far is at or below the state's sequence number (a frame is
    // published after its state), so the `put` holds it.
    pending.queue.clear();
    pending.queue.push_back(put.chunk.clone());
    pending.seen = pending.seen.max(state.seq);
    pending.overflowed = false;
    pending.task_writes = true;
}

/// What the stream's task does next.
enum Next {
    Write(Bytes),
    Resync,
    Wait,
    End { clean: bool },
}

async fn run(stream: &DirectStream, feed: &EnvFeed) {
    loop {
        let next = {
            let mut pending = stream.pending();
            if pending.closed {
                Next::End {
                    clean: pending.queue.is_empty() && !pending.task_writes,
                }
            } else if let Some(bytes) = pending.queue.pop_front() {
                Next::Write(bytes)
            } else if pending.overflowed {
                Next::Resync
            } else {
                // Caught up: the fan-out writes directly again.
                pending.task_writes = false;
                Next::Wait
            }
        };
        match next {
            Next::Write(bytes) => {
                if !write_all(stream, bytes).await {
                    return;
                }
            }
            Next::Resync => {
                tracing::debug!(environment = %feed.id, "slow stream sent a fresh put");
                start_with(stream, feed, &Opening::Put);
            }
            Next::Wait => {
                tokio::select! {
                    () = stream.wake.notified() => {}
                    // The client sends nothing after its request; readable means it closed
                    // (or broke the protocol): either way the stream is over.
                    readable = stream.socket.readable() => {
                        if readable.is_err() || client_left(&stream.socket) {
                            stream.pending().closed = true;
                            return;
                        }
                    }
                }
            }
            Next::End { clean } => {
                // The final chunk only where no chunk is cut off half-written.
                if clean {
                    let _ = stream.socket.try_write(b"0\r\n\r\n");
                }
                return;
            }
        }
    }
}

/// Whether a readable socket says the client is gone.
fn client_left(socket: &TcpStream) -> bool {
    let mut scratch = [0u8; 64];
    match socket.try_read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Writes all of `bytes`, waiting for the socket as needed; whether the stream goes on. A
/// stream closed meanwhile (its credential revoked, say) ends even while its client is not
/// reading.
async fn write_all(stream: &DirectStream, mut bytes: Bytes) -> bool {
    while !bytes.is_empty() {
        tokio::select! {
            writable = stream.socket.writable() => {
                if writable.is_err() {
                    return false;
                }
                match stream.socket.try_write(&bytes) {
                    Ok(written) => bytes = bytes.slice(written..),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            () = stream.wake.notified() => {
                if stream.pending().closed {
                    return false;
                }
            }
        }
    }
    true
}
