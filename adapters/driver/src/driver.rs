//! The run loops: a [`Driver`] future that owns the actor and a transport provided by a
//! [`Runtime`], and an [`Attached`] future that runs the actor over the application's MQTT
//! client, a [`Transport`].

use crate::actor::{Actor, Command};
use crate::clock::now;
use crate::engine::Engine;
use crate::handle::Client;
use crate::mailbox::{mailbox, Receiver};
use crate::settings::seed_for;
use crate::settings::Settings;
use crate::tls::{TlsConfig, TlsError};
use crate::transport::{Bridge, Transport};
use leasedlock::bytes::Bytes;
use leasedlock::connection::Connection;
use leasedlock::lock::{self, ConfigError};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A connection attempt in progress.
pub type ConnectFuture<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

/// Where a [`Runtime`] connects, and whether over TLS.
#[derive(Clone, Debug)]
pub struct Target {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// TLS over the TCP stream, or plain TCP when `None`.
    pub tls: Option<TlsConfig>,
}

/// Why [`connect`] could not set up a driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The lock engine's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS settings cannot be used (a file is missing or unreadable, say).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A runtime's timers: all a driver over an application's [`Transport`] needs of its runtime.
pub trait Timers: 'static {
    /// A timer that fires at an instant and can be moved.
    type Timer: Send + Unpin + 'static;

    /// A timer firing at `at`.
    fn timer(at: Instant) -> Self::Timer;
    /// Move the timer to fire at `at`.
    fn reset_timer(timer: &mut Self::Timer, at: Instant);
    /// Ready once the timer's instant has passed.
    fn poll_timer(timer: &mut Self::Timer, cx: &mut Context<'_>) -> Poll<()>;
}

/// What a runtime adapter provides for the driver's own connection: a TCP connector (with
/// TCP_NODELAY set) that adds TLS when the [`Target`] asks for it, poll-based reads, writes and
/// flushes, and (through [`Timers`]) a resettable timer. No protocol logic belongs here.
pub trait Runtime: Timers {
    /// A connected byte stream: plain TCP or TLS over TCP.
    type Stream: Send + Unpin + 'static;

    /// Open a stream to the broker (TCP_NODELAY set) and complete the TLS handshake if
    /// `target.tls` is set.
    fn connect(target: &Target) -> ConnectFuture<Self::Stream>;
    /// Read into `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>>;
    /// Write some of `buf`.
    fn poll_write(
        stream: &mut Self::Stream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>>;
    /// Push out what the stream buffered (TLS records).
    fn poll_flush(stream: &mut Self::Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The driver's own transport to the broker.
enum Link<S> {
    /// Waiting until `retry_at` to connect.
    Idle { retry_at: Instant },
    /// TCP connect and TLS handshake in progress, given up at the instant (the MQTT connect
    /// timeout: a peer that accepts TCP and never answers the handshake must not hang it).
    Connecting(ConnectFuture<S>, Instant),
    Up {
        stream: S,
        out: VecDeque<Bytes>,
        written: usize,
        /// Bytes were written since the last completed flush.
        unflushed: bool,
    },
    /// Shut down: the future has completed or is completing.
    Closed,
}

/// The future that runs a connection: spawn it on the runtime its [`Runtime`] belongs to. It
/// ends once every [`Client`] handle (and every future, hold and observer made from one) is
/// dropped, after sending DISCONNECT. Dropping it kills the connection without releasing
/// anything (leases then expire at the store).
pub struct Driver<R: Runtime> {
    run: Run<R, Connection>,
    transport: Link<R::Stream>,
    target: Target,
    sat: Option<SatWatch<R::Timer>>,
    read_buf: Box<[u8]>,
    /// How long a TCP connect and TLS handshake may take.
    connect_timeout: Duration,
    /// The connection's span (client id and broker), entered while the driver runs.
    span: tracing::Span,
}

impl<R: Runtime> std::fmt::Debug for Driver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("actor", &self.run.actor)
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .field("tls", &self.target.tls.is_some())
            .field("closing", &self.run.closing)
            .finish_non_exhaustive()
    }
}

/// The service account token file, read every `interval`.
struct SatWatch<T> {
    path: PathBuf,
    interval: Duration,
    timer: T,
    next: Instant,
    /// The token last handed to the session.
    token: Option<Bytes>,
}

/// A client handle and the driver future that serves it; the driver connects at its first poll.
/// The TLS files are read here, once.
pub fn connect<R: Runtime>(settings: &Settings) -> Result<(Client, Driver<R>), SetupError> {
    let tls = match &settings.tls {
        Some(tls) => Some(TlsConfig::new(tls, &settings.host)?),
        None => None,
    };
    let (tx, commands) = mailbox();
    let actor = Actor::new(settings, now(), commands.publisher())?;
    let sat = settings.sat_file.as_ref().map(|path| {
        let next = now().instant + settings.sat_poll_interval;
        SatWatch {
            path: path.clone(),
            interval: settings.sat_poll_interval,
            timer: R::timer(next),
            next,
            token: None,
        }
    });
    let span = tracing::info_span!(
        "leasedlock",
        client_id = %settings.lock.client_id,
        host = %settings.host,
        port = settings.port,
    );
    let driver = Driver {
        run: Run::new(actor, commands),
        transport: Link::Idle {
            retry_at: now().instant,
        },
        target: Target {
            host: settings.host.clone(),
            port: settings.port,
            tls,
        },
        sat,
        read_buf: vec![0; 64 * 1024].into_boxed_slice(),
        connect_timeout: settings.mqtt.connect_timeout,
        span,
    };
    Ok((Client::new(tx), driver))
}

impl<R: Runtime> Driver<R> {
    /// Whether the broker has accepted the current connection.
    pub fn is_connected(&self) -> bool {
        self.run.actor.is_connected()
    }

    /// One round over commands, transport and timer; `true` when anything moved.
    fn poll_round(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = self.poll_commands(cx);
        moved |= self.poll_transport(cx);
        moved |= self.poll_deadline(cx);
        moved |= self.poll_sat(cx);
        moved
    }

    /// Reads the token file when its timer fires; a new token re-authenticates the live
    /// connection (or waits for the next CONNECT).
    fn poll_sat(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(sat) = &mut self.sat else {
            return false;
        };
        if R::poll_timer(&mut sat.timer, cx).is_pending() {
            return false;
        }
        sat.next = now().instant + sat.interval;
        R::reset_timer(&mut sat.timer, sat.next);
        self.refresh_token();
        true
    }

    /// Hands the token file's contents to the session if they changed. A file that cannot be
    /// read keeps the last token; a re-authentication still in progress is retried at the next
    /// look.
    fn refresh_token(&mut self) {
        let Some(sat) = &mut self.sat else {
            return;
        };
        // A token file is small (about a kilobyte, on tmpfs): a blocking read is harmless. An
        // empty read is a file being rewritten in place (truncated, not yet written): no token.
        let Ok(token) = std::fs::read(&sat.path).map(Bytes::from) else {
            return;
        };
        if token.is_empty() {
            return;
        }
        if sat.token.as_ref() != Some(&token)
            && self.run.actor.reauthenticate(now(), token.clone()).is_ok()
        {
            sat.token = Some(token);
        }
    }

    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        match self.run.poll_commands(cx) {
            Commands::Idle => false,
            Commands::Handled => true,
            Commands::AllGone => {
                // Every handle is gone: say goodbye and stop.
                if matches!(self.transport, Link::Up { .. }) && self.run.actor.is_connected() {
                    self.run.actor.disconnect(now());
                } else {
                    self.transport = Link::Closed;
                }
                true
            }
        }
    }

    fn poll_transport(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.transport {
            Link::Closed => false,
            Link::Idle { retry_at } => {
                if now().instant < *retry_at {
                    return false;
                }
                self.run.actor.connecting();
                let give_up = now().instant + self.connect_timeout;
                self.transport = Link::Connecting(R::connect(&self.target), give_up);
                true
            }
            Link::Connecting(connecting, give_up) => match connecting.as_mut().poll(cx) {
                Poll::Pending if now().instant >= *give_up => {
                    let kind = std::io::ErrorKind::TimedOut;
                    let error =
                        std::io::Error::new(kind, "no TCP connection or TLS handshake in time");
                    self.run.actor.connect_failed(&error);
                    self.retry_later();
                    true
                }
                Poll::Pending => false,
                Poll::Ready(Ok(stream)) => {
                    self.transport = Link::Up {
                        stream,
                        out: VecDeque::new(),
                        written: 0,
                        unflushed: false,
                    };
                    // The CONNECT carries the token as the file holds it now.
                    self.refresh_token();
                    self.run.actor.connect(now());
                    true
                }
                Poll::Ready(Err(e)) => {
                    self.run.actor.connect_failed(&e);
                    self.retry_later();
                    true
                }
            },
            Link::Up {
                stream,
                out,
                written,
                unflushed,
            } => {
                let mut moved = false;
                let mut broken = false;
                loop {
                    match R::poll_read(stream, cx, &mut self.read_buf) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            broken = true;
                            break;
                        }
                        Poll::Ready(Ok(n)) => {
                            self.run.actor.handle_bytes(now(), &self.read_buf[..n]);
                            moved = true;
                        }
                        Poll::Pending => break,
                    }
                }
                while let Some(bytes) = self.run.actor.poll_transmit() {
                    out.push_back(bytes);
                }
                while let Some(front) = out.front() {
                    match R::poll_write(stream, cx, &front[*written..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            broken = true;
                            break;
                        }
                        Poll::Ready(Ok(n)) => {
                            moved = true;
                            *unflushed = true;
                            *written += n;
                            if *written == front.len() {
                                out.pop_front();
                                *written = 0;
                            }
                        }
                        Poll::Pending => break,
                    }
                }
                if *unflushed && !broken {
                    match R::poll_flush(stream, cx) {
                        Poll::Ready(Ok(())) => *unflushed = false,
                        Poll::Ready(Err(_)) => broken = true,
                        Poll::Pending => {}
                    }
                }
                if self.run.closing && ((out.is_empty() && !*unflushed) || broken) {
                    self.transport = Link::Closed;
                    return true;
                }
                if broken || self.run.actor.session_ended() {
                    self.run.actor.transport_closed(now());
                    self.retry_later();
                    moved = true;
                }
                moved
            }
        }
    }

    fn retry_later(&mut self) {
        if self.run.closing {
            self.transport = Link::Closed;
        } else {
            let delay = self.run.actor.next_backoff();
            self.transport = Link::Idle {
                retry_at: now().instant + delay,
            };
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        let retry = match self.transport {
            Link::Idle { retry_at } => Some(retry_at),
            Link::Connecting(_, give_up) => Some(give_up),
            _ => None,
        };
        self.run.poll_deadline(cx, retry)
    }
}

impl<R: Runtime> Driver<R> {
    /// Rounds until nothing moves or the driver has stopped.
    fn poll_rounds(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.poll_round(cx) {
            if matches!(self.transport, Link::Closed) {
                return Poll::Ready(());
            }
        }
        if matches!(self.transport, Link::Closed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<R: Runtime> Future for Driver<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        in_span(self.get_mut(), |d| &mut d.span, |d| d.poll_rounds(cx))
    }
}

/// What every driver does the same way: hands the handles' commands to the actor and fires the
/// engine's deadlines.
struct Run<R: Timers, C> {
    actor: Actor<C>,
    commands: Receiver,
    /// The commands taken from the queue at once, being handled (its buffer is reused).
    batch: VecDeque<Command>,
    timer: Option<(R::Timer, Instant)>,
    /// The last engine deadline handled, and when: never spin on a deadline the engine keeps.
    fired: Option<(Instant, Instant)>,
    /// Every handle is gone: the driver is stopping.
    closing: bool,
}

/// What a look at the command queue found.
enum Commands {
    /// Nothing new.
    Idle,
    /// Commands, now handled.
    Handled,
    /// Every handle has just gone.
    AllGone,
}

impl<R: Timers, C: Engine> Run<R, C> {
    fn new(actor: Actor<C>, commands: Receiver) -> Self {
        Run {
            actor,
            commands,
            batch: VecDeque::new(),
            timer: None,
            fired: None,
            closing: false,
        }
    }

    fn poll_commands(&mut self, cx: &mut Context<'_>) -> Commands {
        let mut found = Commands::Idle;
        while !self.closing {
            match self.commands.poll_drain(cx, &mut self.batch) {
                Poll::Ready(true) => {
                    for command in self.batch.drain(..) {
                        self.actor.handle_command(now(), command);
                    }
                    // Swapped with the queue at the next drain: a burst's capacity goes back.
                    if self.batch.capacity() > 1024 {
                        self.batch.shrink_to(64);
                    }
                    found = Commands::Handled;
                }
                Poll::Ready(false) => {
                    self.closing = true;
                    return Commands::AllGone;
                }
                Poll::Pending => break,
            }
        }
        found
    }

    /// Fires the engine's deadline, or wakes at `retry` (a reconnect), whichever comes first.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, retry: Option<Instant>) -> bool {
        let deadline = match (self.actor.poll_timeout(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(raw) = deadline else {
            return false;
        };
        let at = match self.fired {
            // Handled already and kept by the engine: look again a little later, never spin.
            Some((handled, when)) if handled == raw => when + Duration::from_millis(1),
            _ => raw,
        };
        let timer = match &mut self.timer {
            Some((timer, set)) => {
                if *set != at {
                    R::reset_timer(timer, at);
                    *set = at;
                }
                timer
            }
            None => &mut self.timer.insert((R::timer(at), at)).0,
        };
        match R::poll_timer(timer, cx) {
            Poll::Pending => false,
            Poll::Ready(()) => {
                let now = now();
                self.fired = Some((raw, now.instant));
                self.actor.handle_timeout(now);
                true
            }
        }
    }
}

/// The future that runs the lock over the application's MQTT client (a [`Transport`]): spawn it
/// on the runtime its [`Timers`] belong to. It ends once every [`Client`] handle (and every
/// future, hold and observer made from one) is dropped and the transport has the last
/// publishes (the releases of dropped holds), or once the transport is gone for good; it never
/// disconnects the application's client. Dropping it stops the lock without releasing anything
/// (leases then expire at the store).
pub struct Attached<R: Timers, T: Transport> {
    run: Run<R, Bridge<T>>,
    done: bool,
    /// The lock client's span (its client id), entered while the driver runs.
    span: tracing::Span,
}

impl<R: Timers, T: Transport> std::fmt::Debug for Attached<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("actor", &self.run.actor)
            .field("closing", &self.run.closing)
            .finish_non_exhaustive()
    }
}

/// A client handle and the driver future that runs the lock engine of `config` over
/// `transport`, the application's MQTT client: the same async API as over the driver's own
/// connection ([`connect`]). `config.client_id` is the lock holder's name and names the
/// response topic; give it the MQTT client id of the transport's connection, as the AIO SDKs
/// do.
///
/// The engine's seed (correlation data, jitter) is drawn from the client id and the wall clock.
pub fn attach<R: Timers, T: Transport>(
    config: lock::Config,
    transport: T,
) -> Result<(Client, Attached<R, T>), ConfigError> {
    let now = now();
    let span = tracing::info_span!("leasedlock", client_id = %config.client_id);
    let seed = seed_for(&config.client_id);
    let engine = lock::Client::new(config, now, seed)?;
    let (tx, commands) = mailbox();
    let actor = Actor::attached(engine, transport, now, commands.publisher());
    let driver = Attached {
        run: Run::new(actor, commands),
        done: false,
        span,
    };
    Ok((Client::new(tx), driver))
}

impl<R: Timers, T: Transport> Attached<R, T> {
    /// Whether the transport reports a connection.
    pub fn is_connected(&self) -> bool {
        self.run.actor.is_connected()
    }

    /// Rounds until nothing moves or the driver has stopped.
    fn poll_rounds(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.done {
            let mut moved = !matches!(self.run.poll_commands(cx), Commands::Idle);
            match self.run.actor.poll_transport(cx) {
                Some(transport_moved) => moved |= transport_moved,
                None => {
                    tracing::info!("the MQTT client is gone: the lock stops");
                    self.done = true;
                }
            }
            moved |= self.run.poll_deadline(cx, None);
            if self.run.closing && self.run.actor.poll_flush(cx).is_ready() {
                self.done = true;
            }
            if !moved {
                break;
            }
        }
        if self.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<R: Timers, T: Transport + Unpin> Future for Attached<R, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        in_span(self.get_mut(), |d| &mut d.span, |d| d.poll_rounds(cx))
    }
}

/// Runs `poll` on a driver inside its span, taken out of the driver for the while, so that the
/// driver's traces are in it.
fn in_span<D, T>(
    driver: &mut D,
    span: fn(&mut D) -> &mut tracing::Span,
    poll: impl FnOnce(&mut D) -> T,
) -> T {
    let taken = std::mem::replace(span(driver), tracing::Span::none());
    let out = taken.in_scope(|| poll(driver));
    *span(driver) = taken;
    out
}
