//! A simulated node's Modbus links, as a real node has them: a Modbus TCP
//! slave on a socket and Modbus RTU on a serial line (a pty pair from socat
//! stands in for the RS-485 cable), both answering through the firmware's
//! own slave (`firmware::modbus::Slave`) from the node's register image. So
//! a real master (tokio-modbus, the gateway's poller, `mbpoll`) reads the
//! same bytes a board would put on the wire.
//!
//! ```text
//! master ──TCP──▶ TcpSlave ─┐                          ┌─▶ RigSlave (unit 1) ─▶ Slave::handle(node's image)
//! master ──pty──▶ RtuBus ───┴─ frames, LinkControl ────┴─▶ RigSlave (unit 2) ─▶ …
//! ```
//!
//! Every slave comes with a [`LinkControl`], the fault-injection handle of
//! its link: mute it and it stops answering (to the master, a slave timeout;
//! every slave of a bus muted, a dead bus), delay it and it answers late,
//! make it refuse and it answers every request with a Modbus exception (a
//! device that is there and says no). Its counters say what the link did, so
//! a test can tell "the master never asked" from "the slave did not answer".
//!
//! Time: the node's image is read at the rig's virtual now, whatever the
//! wall clock says; the link itself (delays, the RTU line's silence) is real
//! time, because the master at the other end times out in real time.
//!
//! Sharing: a slave is an `Arc<Mutex<_>>` ([`SharedResponder`]), locked for
//! one request at a time, so a test can advance the rig between requests
//! while the link's task serves it.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use firmware::drivers::mcp3208::Mcp3208;
use firmware::hal::Millis;
use firmware::io::{ChargerIo, ClassIo, ElevatorIo, FirepumpIo};
use firmware::modbus::tcp_request_len;
use firmware::modbus::{MAX_ADU_LEN, RequestLen, Slave, SlaveStats, Transport, rtu_frame_gap_us, rtu_request_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::peripherals::{SimAs5600, SimInput, SimMcp3208, SimOutput};
use crate::rig::{
    ChargerPlant, ChargerRig, ElevatorPlant, ElevatorRig, FirepumpPlant, FirepumpRig, Plant, Rig, SimLatches,
};

/// Something that answers Modbus requests as one slave: a simulated node.
pub trait Responder: Send + 'static {
    /// The unit id this slave answers to.
    fn unit(&self) -> u8;
    /// Answers one complete request frame (RTU with its CRC, TCP with its
    /// MBAP header); returns the response length, 0 for no answer.
    fn respond(&mut self, transport: Transport, request: &[u8], response: &mut [u8; MAX_ADU_LEN]) -> usize;
}

/// A slave as the links hold it: the test keeps a clone to move its rig on.
pub type SharedResponder = Arc<Mutex<dyn Responder>>;

/// A rig's node as a slave: answers from the node's register image at the
/// rig's virtual now, and drives the rig's outputs after every request, as
/// the board's main loop does (a written command may have cut a port).
pub struct RigSlave<P: Plant, IO: ClassIo> {
    /// The rig: advance it, inject faults, read its plant.
    pub rig: Rig<P, IO>,
    slave: Slave,
}

impl<P: Plant, IO: ClassIo> RigSlave<P, IO> {
    /// `rig`'s node answering to `unit` (1–247); `None` for another id, as
    /// the firmware's slave refuses it.
    #[must_use]
    pub fn new(rig: Rig<P, IO>, unit: u8) -> Option<Self> {
        Some(RigSlave {
            rig,
            slave: Slave::new(unit)?,
        })
    }

    /// Takes writes signed with `key` (the node's command key), as a
    /// provisioned node does; without it the slave is read-only.
    #[must_use]
    pub fn with_command_key(mut self, key: protocol::CommandKey) -> Self {
        self.slave = self.slave.with_command_key(key, 0);
        self
    }

    /// Shared, as the links take it: keep the `Arc` to move the rig on
    /// (lock it between requests) and hand a clone to a link.
    #[must_use]
    pub fn shared(self) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(self))
    }

    /// The firmware slave's counters (requests, exceptions, bad frames,
    /// frames for other units): what the node itself saw of the link.
    #[must_use]
    pub fn stats(&self) -> SlaveStats {
        self.slave.stats()
    }
}

impl<P, IO> Responder for RigSlave<P, IO>
where
    P: Plant + Send + 'static,
    IO: ClassIo + Send + 'static,
    IO::Logic: Send,
{
    fn unit(&self) -> u8 {
        self.slave.unit_id()
    }

    fn respond(&mut self, transport: Transport, request: &[u8], response: &mut [u8; MAX_ADU_LEN]) -> usize {
        serve(&mut self.slave, &mut self.rig, transport, request, response)
    }
}

/// Answers one request to `rig`'s node through `slave`, from the node's
/// register image at the rig's virtual now, then drives the rig's outputs
/// as the board's main loop does (a written command may have cut a port or
/// started a self-test). Returns the response length, 0 for no answer.
pub fn serve<P: Plant, IO: ClassIo>(
    slave: &mut Slave,
    rig: &mut Rig<P, IO>,
    transport: Transport,
    request: &[u8],
    response: &mut [u8; MAX_ADU_LEN],
) -> usize {
    let now = Millis(rig.now());
    let len = slave.handle(transport, request, rig.node.logic_mut(), now, response);
    rig.io.apply(rig.node.logic());
    len
}

/// An elevator node as a slave.
pub type ElevatorSlave = RigSlave<ElevatorPlant, ElevatorIo<SimInput, SimAs5600, SimOutput>>;
/// A fire pump node as a slave.
pub type FirepumpSlave = RigSlave<FirepumpPlant, FirepumpIo<SimInput, Mcp3208<SimMcp3208>, SimOutput>>;
/// A charging bay node as a slave.
pub type ChargerSlave = RigSlave<ChargerPlant, ChargerIo<SimInput, Mcp3208<SimMcp3208>, SimOutput, SimLatches>>;

/// A rig must be able to move into a link's task: its wires are shared
/// mutexes, not cells. Checked here so that a `Cell` slipping back into a
/// peripheral fails the build, not a test.
const _: () = {
    const fn send<T: Send>() {}
    send::<ElevatorRig>();
    send::<FirepumpRig>();
    send::<ChargerRig>();
    send::<ElevatorSlave>();
    send::<FirepumpSlave>();
    send::<ChargerSlave>();
};

/// The fault-injection handle of one slave's link, shared by the test and
/// the link's task (atomics: set it from anywhere, at any time; it applies
/// from the next request on).
#[derive(Debug, Default)]
pub struct LinkControl {
    mute: AtomicBool,
    /// The exception every request is answered with; 0: none.
    refuse: AtomicU8,
    delay_ms: AtomicU64,
    served: AtomicU64,
    dropped: AtomicU64,
}

impl LinkControl {
    /// A link that answers at once, shareable.
    #[must_use]
    pub fn new() -> Arc<LinkControl> {
        Arc::new(LinkControl::default())
    }

    /// Mutes the slave (`true`): it hears requests and answers none, so the
    /// master sees a slave timeout; a dead slave. Requests are not even
    /// handed to the node, so a muted node performs no written command.
    pub fn set_mute(&self, mute: bool) {
        self.mute.store(mute, Ordering::SeqCst);
    }

    /// Whether the slave is muted.
    #[must_use]
    pub fn muted(&self) -> bool {
        self.mute.load(Ordering::SeqCst)
    }

    /// Has the slave answer every request with the Modbus exception `code`
    /// (`Some(4)`: server device failure, a controller whose board failed;
    /// `Some(6)`: busy), or serve again (`None`). To the master the slave is
    /// there and refusing, not a timeout. As with a mute, the request is not
    /// handed to the node, so a refusing node performs no written command.
    pub fn set_refuse(&self, code: Option<u8>) {
        self.refuse.store(code.unwrap_or(0), Ordering::SeqCst);
    }

    /// The exception the slave answers every request with, if it refuses.
    #[must_use]
    pub fn refusing(&self) -> Option<u8> {
        Some(self.refuse.load(Ordering::SeqCst)).filter(|c| *c != 0)
    }

    /// Answers `ms` of real time late (0: at once), to try the master's
    /// timeouts: late answers must not be taken for later requests.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The delay before each answer, in milliseconds.
    #[must_use]
    pub fn delay_ms(&self) -> u64 {
        self.delay_ms.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    #[must_use]
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Requests for this slave not answered because it was muted.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Locks a slave for one request; a test that panicked holding it has
/// already failed, so its poison is not a second error.
fn lock<R: ?Sized>(m: &Mutex<R>) -> MutexGuard<'_, R> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers one frame for one slave under its link's faults; whether the
/// link is still usable.
async fn answer(
    out: &mut (impl AsyncWrite + Unpin),
    transport: Transport,
    frame: &[u8],
    slave: &Mutex<dyn Responder>,
    control: &LinkControl,
) -> bool {
    if control.muted() {
        control.dropped.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    let mut response = [0u8; MAX_ADU_LEN];
    let len = match control.refusing() {
        Some(code) => exception_response(transport, frame, code, &mut response),
        None => lock(slave).respond(transport, frame, &mut response),
    };
    if len == 0 {
        return true;
    }
    let delay = control.delay_ms();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if out.write_all(&response[..len]).await.is_err() || out.flush().await.is_err() {
        return false;
    }
    control.served.fetch_add(1, Ordering::SeqCst);
    true
}

/// The exception response `code` to one request frame, as a slave that
/// refuses everything sends it (the function with its high bit set, then the
/// code); 0 for a frame a slave would not answer (too short, a broken CRC, a
/// broadcast).
fn exception_response(transport: Transport, frame: &[u8], code: u8, response: &mut [u8; MAX_ADU_LEN]) -> usize {
    match transport {
        Transport::Tcp => {
            // MBAP: transaction, protocol, length, unit; then the function.
            let [t0, t1, p0, p1, _, _, unit, function, ..] = *frame else {
                return 0;
            };
            response[..9].copy_from_slice(&[t0, t1, p0, p1, 0, 3, unit, function | 0x80, code]);
            9
        }
        Transport::Rtu => {
            let Some((body, crc)) = frame.split_last_chunk::<2>() else {
                return 0;
            };
            let [unit, function, ..] = *body else {
                return 0;
            };
            if unit == 0 || crc16(body).to_le_bytes() != *crc {
                return 0;
            }
            response[..3].copy_from_slice(&[unit, function | 0x80, code]);
            let crc = crc16(&response[..3]).to_le_bytes();
            response[3..5].copy_from_slice(&crc);
            5
        }
    }
}

/// The Modbus RTU CRC (polynomial 0xA001, reflected, from 0xFFFF).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFF_u16;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// Aborts a link's task when its handle goes, so a test that fails midway
/// leaves no slave answering on a port for the next test.
struct Task(Option<JoinHandle<()>>);

impl Task {
    async fn stop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// A Modbus TCP slave: one node on a socket, any number of masters
/// connected at once.
pub struct TcpSlave {
    addr: SocketAddr,
    task: Task,
}

impl TcpSlave {
    /// Listens on `listen` (port 0 picks a free one) and serves `slave`
    /// under `control` until stopped or dropped.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub async fn start(listen: SocketAddr, slave: SharedResponder, control: Arc<LinkControl>) -> io::Result<TcpSlave> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Connections end with the listener: dropping the set aborts them.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(serve_tcp(stream, slave.clone(), control.clone()));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(TcpSlave {
            addr,
            task: Task(Some(task)),
        })
    }

    /// Where masters connect.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes every connection: to the master, a device
    /// that is gone (connections refused), unlike a muted one (timeouts).
    pub async fn stop(mut self) {
        self.task.stop().await;
    }
}

/// One master's connection: frames by the MBAP length, answered in order.
async fn serve_tcp(mut stream: TcpStream, slave: SharedResponder, control: Arc<LinkControl>) {
    let mut buf = Vec::with_capacity(2 * MAX_ADU_LEN);
    let mut chunk = [0u8; MAX_ADU_LEN];
    loop {
        match tcp_request_len(&buf) {
            RequestLen::Exactly(n) if buf.len() >= n => {
                let frame: Vec<u8> = buf.drain(..n).collect();
                if !answer(&mut stream, Transport::Tcp, &frame, &slave, &control).await {
                    return;
                }
                continue;
            }
            // A broken MBAP header: the stream can no longer be split into
            // frames, so the connection goes, as the firmware's slave asks.
            RequestLen::Unknown => return,
            RequestLen::NeedMore | RequestLen::Exactly(_) => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The least silence that ends a frame of unknown length on a pty. A real
/// line's 3.5 characters (under 2 ms at 19200 baud) is shorter than the
/// scheduler's jitter between two chunks of one write through socat, which
/// would cut frames in two on a busy machine; frames of known length never
/// wait for it.
const PTY_SILENCE: Duration = Duration::from_millis(20);

/// A Modbus RTU bus: several simulated nodes on one serial line, each
/// answering the frames addressed to its unit id.
pub struct RtuBus {
    task: Task,
}

/// One slave on a bus.
struct OnBus {
    unit: u8,
    slave: SharedResponder,
    control: Arc<LinkControl>,
}

impl RtuBus {
    /// Opens the serial device at `path` (a pty end: socat's `raw,echo=0`
    /// makes it a raw line; 8N1) and serves `slaves` on it until stopped or
    /// dropped. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// If the device cannot be opened.
    pub fn start(path: &Path, baud: u32, slaves: Vec<(SharedResponder, Arc<LinkControl>)>) -> io::Result<RtuBus> {
        let builder = tokio_serial::new(path.to_string_lossy(), baud)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One);
        let port = tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)?;
        let slaves = slaves
            .into_iter()
            .map(|(slave, control)| {
                let unit = lock(&slave).unit();
                OnBus { unit, slave, control }
            })
            .collect();
        let silence = Duration::from_micros(u64::from(rtu_frame_gap_us(baud))).max(PTY_SILENCE);
        let task = tokio::spawn(serve_rtu(port, silence, slaves));
        Ok(RtuBus { task: Task(Some(task)) })
    }

    /// Stops the bus and closes the line: every slave on it is gone at once.
    pub async fn stop(mut self) {
        self.task.stop().await;
    }
}

/// The bus: frames by the request's own length (or, when it cannot say, by
/// the line's silence), each handed to the slaves it addresses.
async fn serve_rtu(mut port: impl AsyncRead + AsyncWrite + Unpin, silence: Duration, slaves: Vec<OnBus>) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * MAX_ADU_LEN);
    let mut chunk = [0u8; MAX_ADU_LEN];
    loop {
        while let RequestLen::Exactly(n) = rtu_request_len(&buf)
            && buf.len() >= n
        {
            let frame: Vec<u8> = buf.drain(..n).collect();
            dispatch(&mut port, &frame, &slaves).await;
        }
        let read = if buf.is_empty() {
            Ok(port.read(&mut chunk).await)
        } else {
            tokio::time::timeout(silence, port.read(&mut chunk)).await
        };
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // A pty whose other end is not open reads nothing (or EIO) until
            // a master opens it again: wait for one instead of spinning.
            Ok(_) => tokio::time::sleep(PTY_SILENCE).await,
            // The line fell silent mid-frame: what came is one frame (an
            // unknown function's, or noise and half frames the addressed
            // slave drops on their CRC), and the next byte starts afresh.
            Err(_) => {
                let frame = std::mem::take(&mut buf);
                dispatch(&mut port, &frame, &slaves).await;
            }
        }
    }
}

/// Hands a frame to the slaves of its unit id (all of them for a broadcast,
/// which none answers).
async fn dispatch(port: &mut (impl AsyncWrite + Unpin), frame: &[u8], slaves: &[OnBus]) {
    let Some(&unit) = frame.first() else { return };
    for s in slaves.iter().filter(|s| s.unit == unit || unit == 0) {
        if unit == 0 && s.control.muted() {
            // A broadcast is never answered: a muted slave drops nothing of it.
            continue;
        }
        // A write error is the line's: the next frame tries again.
        let _ = answer(port, Transport::Rtu, frame, &s.slave, &s.control).await;
    }
}
