//! A deterministic simulator of lock clients, the state store and the network between them.
//!
//! The input bytes choose a configuration (1–4 clients, clock skews and drifts, network delays,
//! leases, the mode) and then, step by step, one of the actions possible at that moment: let time
//! jump to the next deadline, sleep, start a user intent on a client, complete an edit (mostly
//! with `Set(n + 1)`, one time in sixteen each with `Delete` or `Abort`), disconnect, reconnect or crash a client, change a client's clock rate, or suspend a client's
//! host. An intent may name a lock another operation of the same client is using (a second
//! caller in one engine): the engine refuses it (`LockInUse`, `HeldLocally`) or queues it (edits),
//! and S1 holds across clients either way. Whatever a client or the store sends takes one more byte that decides its fate (below).
//! Time only moves to the next deadline (a delivery, a client timer, a key expiry): there is no
//! tick.
//!
//! A **suspended host** (a laptop's lid closed, a VM paused) is suspended for a quarter of a lease
//! to over three leases: its monotonic clock stands still while its wall clock runs on, as
//! `CLOCK_MONOTONIC` does; the rest of the world goes on; the client runs no timer and reads
//! nothing until it wakes, then reads what arrived meanwhile, in order. The engine must not
//! believe a lease past its end by either clock (caught without the wall clock by the canary
//! `canary-pause`, as S1 or S2).
//!
//! # Two modes
//!
//! Bit 7 of the first input byte ([`mode_of`], [`set_mode`]) chooses how the clients are driven
//! and what the network carries; the actions, the clock model, the checks and the trace are the
//! same in both, and so is the meaning of every other input byte.
//!
//! - **Message mode**: each client is a bare `lock::Client` driven at the `Message` level (as
//!   another MQTT client would drive it: `poll_output`, `to_message`, `handle_message`,
//!   `handle_subscribed`), and the network carries messages. A fate byte delivers a message after
//!   a delay (which reorders), drops it, duplicates it, or (requests) applies it with the reply
//!   lost, or has the service answer it **503** (unavailable) instead of the store, which may or
//!   may not have applied it; a fenced write (an edit's fence or write) may also be **held** for three leases, far
//!   beyond the safety margin, so that it reaches the store after its lease ended and another
//!   client has taken the lock and read the key (the fault of a previous holder's delayed write;
//!   caught without the edit fence by the canary `canary-edit-fence`, as S6). A response or a
//!   notification may also **stall**: arrive 150 ms to two leases late, beyond the safety margin.
//! - **Byte mode**: each client is a `connection::Connection` — the engine glued to the crate's
//!   MQTT v5 session, as every production adapter drives it — exchanging bytes with a modelled
//!   MQTT v5 broker in front of the same emulator (`broker.rs`, with a codec of its own written
//!   from the specification, `codec.rs`). This fuzzes the production byte path: the request
//!   PUBLISH templates, the parsing of raw responses, PUBACK handling, the session's in-flight
//!   window, keep-alive, resubscription and re-registration after reconnecting. The network
//!   carries each connection's bytes in order, as TCP does, cut into pieces at random places
//!   (every packet boundary and every split of a packet gets exercised on both sides). A fate byte
//!   — taken by each chunk a client writes that holds requests, and by each message the broker
//!   publishes to a client — gives a delay (never reordering the bytes of a connection), cuts the
//!   connection (drop: what is on the wire both ways is lost, the broker's end learns at once and
//!   the client's after half the maximum delay, and the client stays disconnected until a connect
//!   action or the healing reconnects it), makes the broker lose the reply of the chunk's first
//!   request (the store applies it, the response goes nowhere) or have the service answer it
//!   503, applied or not (as in message mode), or (broker to client only) sends a second copy
//!   of the message later, as a new PUBLISH (the store's own QoS 1 session sending it again).
//!   Either way, a fate byte may also **stall** the chunk or
//!   the message 150 ms to two leases, beyond the safety margin, and with it everything after it
//!   on the connection that way (a broker or a route that stops for a while). The disconnect action is a DISCONNECT followed by
//!   closing the transport; a crash closes the transport after what was written (the process
//!   dies, its kernel sends the rest and FIN); a new connection with the client id takes over an
//!   older one still open at the broker. Byte mode also draws the broker's Receive Maximum
//!   (65 535, 4, 2 or 1) and the clients' keep-alive (60 s or 3 s) from the first byte, and
//!   varies, from a generator seeded by the input, what MQTT leaves to the broker: optional
//!   CONNACK properties (among them a Server Keep Alive of 2 s the client must follow), the
//!   encoding of each PUBACK, whether it goes before or after the store's answer, the broker's
//!   packet identifiers, the order of the properties of each PUBLISH (user properties keep
//!   theirs), and whether bytes due together on a connection are read in one go.
//!
//! Byte mode also resumes **MQTT sessions**. The broker keeps a client's session when its
//! connection ends if the CONNECT asked for it (a Session Expiry above 0; the crate's session asks
//! for an hour, and after its first connection sends Clean Start 0): its subscriptions, the
//! PUBLISHes the client had not acknowledged, and the QoS 1 messages of its subscriptions that
//! come while it has no connection. A CONNECT with Clean Start 0 resumes it (CONNACK Session
//! Present 1; the subscriptions hold again), and the broker re-sends what was unacknowledged, with
//! DUP and the same packet ids, then what was queued; one time in four, drawn from a generator
//! seeded by the input, the broker has forgotten the session (it restarted without persistence
//! while the client was away) and answers Session Present 0. The client may then re-send its own
//! unacknowledged requests with DUP: MQTT asks it to, and the crate's connection, whose engine
//! gives up every request in flight when a connection ends, must not (caught otherwise by the
//! canary `canary-resend`, as S7). A crashed client restarts with Clean Start 1 and a new session.
//!
//! In runs that draw it (bits 5–6 of the second input byte = 1), the broker **refuses subscriptions**:
//! one SUBSCRIBE in four, in either mode, is answered with a SUBACK failure (not authorized,
//! quota exceeded, unspecified or topic filter invalid); the subscription does not hold, and is
//! not kept in the session. The client cannot work on that connection: its operations must fail
//! at once (L4) rather than wait for a grant that will not come, and it works again after it
//! reconnects (at the healing, a client with a refused subscription reconnects).
//!
//! In runs that draw it (bits 5–6 of the second input byte = 2, with two clients or more), client 1 is
//! a **twin** of client 0: a second engine with the same MQTT client id, as two processes
//! configured alike. Both use session ids (`s…` and `t…`), which keep their holder values apart.
//! The broker keeps one connection and one session per client id: a twin's new connection takes
//! the other's over (byte mode: DISCONNECT 0x8E, then the broker closes it; what the other wrote
//! meanwhile is dropped) and resumes its session, with the other's unacknowledged PUBLISHes and
//! queued messages (responses the engine does not know, to be ignored); the store, which keys
//! registrations by client id, drops both twins' when either's connection ends. S1–S7 must
//! hold (caught otherwise by the canary `canary-holder`, whose holder values leave the session
//! id out, as S1). At the healing the twin stops for good (its process ends, leaving its lease to
//! expire), since two connections with one client id cannot both stay up.
//!
//! In runs that draw it (bit 4 of the third input byte), the store **forgets registrations**: an
//! action makes it drop every KEYNOTIFY registration of one client id while the connection goes
//! on (a store that restarted or failed over without them), in either mode. Nobody tells the
//! client, whose DELETE notifications stop: its waiters must get a free lock through their
//! fallback re-checks (L5; caught otherwise by the canary `canary-forget`, whose waiters trust a
//! confirmed registration and put their re-check off, in runs without lost messages, where the
//! forgetful store finds it within a few seeds and twins alone, which also drop registrations,
//! only after about forty times as many).
//!
//! In runs that draw it (bits 3–4 of the second input byte = 3), the store **fills up**: an
//! action makes it full, as other tenants' keys would (every SET refused with `-ERR the quota
//! has been exceeded`; reads and deletes go on), and the next one gives it room again, in either
//! mode; the healing gives it room. A quota refusal is definite for the request it answers, but
//! not for an edit whose write it refuses on a repetition: the first attempt may have been
//! applied, so the edit is `Indeterminate` (taken as a definite failure by the canary
//! `canary-quota`, as S4, in message mode with edits without the fence, below, where a lost
//! reply makes the edit repeat its write).
//!
//! In runs that draw it (message mode, bits 5–7 of the third input byte = 7; [`set_unfenced`]),
//! the clients' edits go **without the edit fence** (`Config::raise_edit_fence` off): they
//! release the lock after their write's answer instead of right behind the write, and repeat a
//! write whose answer was lost while the lease lasts. No fenced write is held in these runs: a
//! previous holder's write that lands after its lease is the fault the fence is for, and
//! without it such a write is lost as documented (caught by `canary-edit-fence`, which turns
//! the fence off in every run); the other faults stay, and so do S1–S7.
//!
//! A stall is the fault the safety margin does not cover: the engine must count a lease from the
//! SET's sending, never from its reply (caught otherwise by the canary `canary-stall`, as S1 or
//! S2), and may only believe a reply that arrives within the validity it gives.
//!
//! A 503 is the service's error reply that does not say whether the request was applied: a
//! write so answered must be reported `Indeterminate` (taken for a refusal by the canary
//! `canary-5xx`, as S4).
//!
//! Delete edits exercise the edit fence's placeholder: an edit that reads the counter absent
//! fences it with the placeholder, a `Delete` then deletes it (fenced) and reports `Deleted`, an
//! `Abort` deletes it too and reports `Unchanged` (a delete taken as done on a key read absent,
//! leaving the placeholder, is caught by the canary `canary-delete-absent`, as S4). Other error
//! replies of the store (syntax, fencing) are not modelled as faults: the emulator answers them
//! where the real store would.
//!
//! Model limits (each one a decision, see the report in the commit history): ordinary one-way
//! delays are below the engine's safety margin, and only stalls go beyond it; in message mode a
//! *request* never stalls (only a fenced write may be held, above): a request the store applies
//! long after the client moved on could delete a later lease of the same holder value (see
//! below), a limit of the protocol, while in byte mode TCP keeps a stalled request before what
//! the client sends after it and the broker drops an older connection's bytes once a newer one
//! is up; a duplicated *request* (message mode) reaches the store right after its original (an
//! MQTT QoS 1 redelivery happens before anything the client sends later), while duplicated
//! responses and notifications may come at any delay. A request whose copy arrived after the
//! client had already seen the answer to the original could replay a VDEL onto a later lease of
//! the same holder value: that is a limit of the protocol (holder values are reused), not of the
//! engine. In byte mode a DISCONNECT's Session Expiry is not read (the crate sends none), and the store's
//! notification registrations end with the connection even when the session goes on (the engine
//! registers again on every connection). The broker takes QoS 1 requests only, and no UNSUBSCRIBE, AUTH, will,
//! topic alias or shared subscription (the client uses none; a Subscription Identifier would be
//! read but not sent back); it never refuses a publish (no PUBACK 0x10 or 0x87) and never disconnects a client itself: not even one whose host is suspended
//! past its keep-alive (W3 does not count the time the client was suspended). Time jumps ignore
//! idle keep-alive deadlines (the pings on the way still go out when due).
//!
//! After every step the invariants are checked (S7 as each request is written):
//!
//! - **S1** no two clients consider themselves holders of a lock at the same real instant
//!   (each client's monotonic clock drifts at most `clock_rate_drift_ppm` from real time while
//!   its host is awake; its wall clock, skewed by a constant, also counts the time suspended);
//! - **S2** the fencing tokens announced to users (`Acquired`, `Renewed`) never decrease per lock;
//! - **S3** every operation ends exactly once, with a final event of its kind, and gets no event
//!   after that;
//! - **S4** for each lock's counter (edited under the lock), each kind of write (`Set`, `Delete`)
//!   counted apart: `done ≤ carried out ≤ done + indeterminate + in flight`, where *carried out*
//!   counts what the store's records show it did (a write equal to one carried out before, with
//!   the same token, is a copy of it, duplicated, re-sent or held back by the MQTT session, and
//!   counts once wherever it lands; a DEL of an absent key counts, as it leaves the
//!   key absent) and *done* what the edits reported (`Written`, `Deleted`; an `Abort` promises
//!   nothing, the delete of its fence's placeholder counts as indeterminate); the counter holds
//!   exactly the number of `Set`s carried out since the store last deleted it (an absent key or
//!   the fence's placeholder reads 0); and the store never accepts a write to the counter without
//!   a fencing token or with one lower than the stored token or than the last write's since the
//!   last delete. A delete removes the key's fence (PROTOCOL.md §5): a write that lands on the
//!   deleted key with a token not newer than the removed fence (a stale holder's, or a late copy
//!   of the deleting edit's own fence, which brings back the value it read), or from a writer
//!   that no longer holds the lock at the store (a later holder's held fence that lands after
//!   an earlier holder's held delete), is that documented hole, not a violation, and the
//!   counter then holds what that write says;
//! - **S5** nothing panics (a panic is a failure of the run);
//! - **S6** once an edit has shown its user a counter's value, the store accepts no write to that
//!   counter with an older token: what the user saw stays the value until its edit writes (or
//!   until the key is deleted, which ends the claim);
//! - **S7** a fenced write to a counter (an edit's fence or its write) leaves a client only
//!   while the client holds the lock with that token, by its own clocks, at the moment it is
//!   written (an edit's write also while it goes ahead of the VDEL that released its lease right
//!   behind it, within that lease: `Client::write_token`): in message mode when the engine hands it out, in byte mode when its bytes are
//!   written to the transport (a write the engine gave up, or whose lease ended while it waited
//!   in the MQTT session's queue, must not go). The fence on the store only refuses a stale
//!   write once a newer holder has raised it; S7 asks the engine not to send one at all. In
//!   byte mode, likewise, every request leaves only while the engine still waits for its
//!   answer, first sent or re-sent with DUP on a resumed session: a request the engine gave up
//!   (its operation ended, its time ran out, its connection ended) never reaches the store.
//!
//! Byte mode checks the wire as well (the broker checks the client, the world checks what the
//! session reports of the broker):
//!
//! - **W1** every packet a client writes is well-formed MQTT v5 and in protocol order: every
//!   buffer of `poll_transmit` holds whole packets; CONNECT first and once, with the client's id;
//!   requests are QoS 1 PUBLISHes to the request topic, not retained, and DUP (a re-send) only on
//!   a resumed session; a packet identifier is reused on a connection only after the client has
//!   read the acknowledgement that freed it (the session numbers its packets in turn, so runs of
//!   this length never reuse one; a new connection starts afresh: the broker keeps no state for a
//!   QoS 1 PUBLISH of the client, so the packet ids of the old session are free); a PUBACK
//!   answers a PUBLISH of the broker in flight; nothing follows DISCONNECT;
//! - **W2** a client never has more QoS 1 PUBLISHes unacknowledged than the broker's Receive
//!   Maximum (counted from what the client had read when it wrote each one);
//! - **W3** a client writes a packet at least every 1.5 × its keep-alive while its host is awake,
//!   as MQTT requires;
//! - **W4** the session accepts everything the broker sends (it never reports a malformed packet,
//!   a protocol violation, a refused connection or an authentication event; it reports the
//!   sessions the broker resumes).
//!
//! When the input ends, faults stop and the network heals: every client reconnects, holds are
//! closed, edits that wait for the user are completed, and the simulation runs to quiescence
//! (bounded). Then **L1** every operation has ended, and **L2** a fresh `acquire` on a free lock
//! succeeds within a bounded simulated time.
//!
//! At every step, **L4**: a client that has read a refused SUBACK on its current connection has
//! no operation open (caught otherwise by the canary `canary-suback`, whose engine ignores the
//! refusal and keeps its operations waiting; the healing would hide it, as a reconnect
//! subscribes again).
//!
//! Message mode also bounds the handoff at every step (`handoff.rs`): **L3** a waiter (an
//! acquire, a hold or an edit of a client that does not hold the lock) whose SET was refused, and which
//! had received a DELETE notification of the lock after it sent that SET (the notification
//! overtook the refusal), sends a new SET within the retry jitter (+ 1 ms) of the refusal's
//! arrival, unless it has started, cancelled, released or ended an operation of the lock or lost
//! its connection since (caught otherwise by the canary `canary-handoff`, which waits for the re-check a lease
//! later). **L5** a waiter sends a SET of its lock within a lease (+ twice the drift bound), the
//! request timeout, the request timeout in whole seconds rounded up (the message expiry of a VDEL
//! of its own, which holds its SETs back), twice the retry jitter and twice the largest delay
//! (+ 50 ms) of the later of
//! the lock's freeing at the store and its last SET, start of an operation on the lock, new
//! connection, restart or wake: told of the DELETE or not, it does not sleep through a free lock.
//! The bound is an instant of the run: time does not jump past it.
//!
//! A violation is returned as a [`Failure`] (and [`run`] panics with it): the step, the mode, the
//! invariant and the last events of the trace.
//!
//! The files: `world.rs` (the configuration, the run, the actions and intents, time),
//! `link.rs` (the client's front in each mode), `net.rs` (the network and the fates),
//! `handoff.rs` (L3, L5),
//! `carry.rs` (how outputs are carried and delivered in each mode), `broker.rs` and `codec.rs`
//! (the modelled broker), `checks.rs` (the invariants), `trace.rs`, `input.rs`.

mod broker;
mod carry;
mod checks;
mod codec;
mod handoff;
mod input;
mod link;
mod net;
mod trace;
mod world;

pub use input::{
    mode_of, seed_input, set_herd, set_lossless, set_mode, set_repeats_into_a_full_store,
    set_unfenced,
};
pub use link::Mode;
pub use world::{Failure, Summary};

/// Runs one schedule; `Err` describes the first violated invariant with a trace.
pub fn simulate(data: &[u8]) -> Result<Summary, Failure> {
    world::World::run(data)
}

/// The fuzz harness: runs one schedule and panics with the trace on a violation.
pub fn run(data: &[u8]) {
    if let Err(failure) = simulate(data) {
        panic!("{failure}");
    }
}
