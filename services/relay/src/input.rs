//! GPIO inputs: push buttons on lines the service watches. An exit button opens
//! its relay (source `input`); a physical call button is announced on the bus
//! (`ButtonPressed`) for the SIP agent to place the button's call.
//!
//! Each backend has a [`Watcher`] that reports the level of every input line
//! ([`Reading`]); the task of [`spawn`] debounces them in software, whatever the
//! backend (a level counts once it was stable for the input's `debounce_ms`), and
//! acts on each press (inactive to active). Inputs are never recorded in the
//! claims file: `--release-all` drives lines inactive as outputs, which an input
//! line must never become.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::controller::{Event, Handle, OpenError};

/// What an input does when pressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Opens this relay, with source `input`.
    Opens(String),
    /// Presses this call button (1-16).
    Presses(u16),
}

/// One configured input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputConfig {
    pub gpio: u32,
    /// Pressed when the line is low.
    pub active_low: bool,
    /// How long a level must be stable to count.
    pub debounce: Duration,
    pub action: Action,
}

impl InputConfig {
    /// The inputs of the configuration document's `inputs` section (entries the
    /// config service would refuse are skipped).
    pub fn from_document(inputs: &[doorphone_interfaces::config::document::Input]) -> Vec<Self> {
        inputs
            .iter()
            .filter_map(|i| {
                let action = match (&i.opens, i.presses) {
                    (Some(relay), None) => Action::Opens(relay.clone()),
                    (None, Some(button)) => Action::Presses(u16::try_from(button).ok()?),
                    _ => return None,
                };
                Some(InputConfig {
                    gpio: i.gpio,
                    active_low: i.active_low,
                    debounce: Duration::from_millis(i.debounce_ms.into()),
                    action,
                })
            })
            .collect()
    }

    /// Whether an electrical level (0 or 1) means pressed.
    pub fn is_active(&self, level: u8) -> bool {
        (level != 0) != self.active_low
    }
}

/// A level read from an input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub gpio: u32,
    /// The button is pressed (the line is at its active level).
    pub active: bool,
    /// The first reading of the line since it was claimed: it sets the resting
    /// level, and a button held then is not a press.
    pub initial: bool,
}

/// Software debounce of one line: a pure state machine, like [`crate::door`].
/// A new level counts once it was held for the debounce time; a bounce back
/// before that is forgotten.
#[derive(Debug, Clone)]
pub struct Debouncer {
    debounce: Duration,
    /// The level that counts.
    stable: bool,
    /// The last level read.
    raw: bool,
    /// When `raw` becomes the stable level, if it differs.
    due: Option<Instant>,
}

impl Debouncer {
    /// A line at rest (inactive).
    pub fn new(debounce: Duration) -> Debouncer {
        Debouncer {
            debounce,
            stable: false,
            raw: false,
            due: None,
        }
    }

    /// The line read `active` at `now`.
    pub fn read(&mut self, now: Instant, active: bool) {
        if active == self.raw {
            return;
        }
        self.raw = active;
        self.due = (self.raw != self.stable).then(|| now + self.debounce);
    }

    /// The level that counts from now on, without a press: the resting level.
    pub fn reset(&mut self, active: bool) {
        self.stable = active;
        self.raw = active;
        self.due = None;
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// Takes the level change due at `now`: `Some(true)` is a press,
    /// `Some(false)` a release.
    pub fn step(&mut self, now: Instant) -> Option<bool> {
        match self.due {
            Some(at) if at <= now => {
                self.due = None;
                self.stable = self.raw;
                Some(self.stable)
            }
            _ => None,
        }
    }
}

/// Watches input lines on one backend and sends a [`Reading`] for every level
/// it sees.
pub trait Watcher: Send {
    /// Watches exactly `inputs` from now on.
    fn watch(&mut self, inputs: &[InputConfig]);
}

/// A thread watching one line, stopped (and joined) on drop.
struct LineThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineThread {
    fn spawn(name: String, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> LineThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(flag))
            .map_err(|e| tracing::error!("cannot start an input thread: {e}"))
            .ok();
        LineThread { stop, thread }
    }
}

impl Drop for LineThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What makes a line thread start again: the line, its level and its debounce.
type LineKey = (u32, bool, Duration);

fn key(input: &InputConfig) -> LineKey {
    (input.gpio, input.active_low, input.debounce)
}

/// Keeps the threads of lines whose settings stay, stops the others and starts
/// the new ones.
fn rewatch(
    threads: &mut HashMap<LineKey, LineThread>,
    inputs: &[InputConfig],
    mut start: impl FnMut(&InputConfig) -> LineThread,
) {
    let wanted: Vec<LineKey> = inputs.iter().map(key).collect();
    threads.retain(|k, _| wanted.contains(k));
    for input in inputs {
        threads.entry(key(input)).or_insert_with(|| start(input));
    }
}

/// How often a sysfs line without edge interrupts is read.
pub const SYSFS_POLL_PERIOD: Duration = Duration::from_millis(10);

/// The kernel's sysfs GPIO interface: each line is exported as an input with
/// `edge` = `both`, and a thread waits for the kernel's POLLPRI on its `value`
/// file (epoll, through `sysfs_gpio`'s `PinPoller`), reading the value at each
/// wake-up and at least every 100 ms. When edges cannot be had (a GPIO chip
/// without interrupts refuses `edge`; a file that is not a kernel attribute, as
/// on a fake tree, cannot be polled) it reads `value` every 10 ms instead. The
/// line is unexported when it is no longer watched.
pub struct SysfsInputs {
    readings: mpsc::UnboundedSender<Reading>,
    threads: HashMap<LineKey, LineThread>,
}

impl SysfsInputs {
    pub fn new(readings: mpsc::UnboundedSender<Reading>) -> SysfsInputs {
        SysfsInputs {
            readings,
            threads: HashMap::new(),
        }
    }
}

impl Watcher for SysfsInputs {
    fn watch(&mut self, inputs: &[InputConfig]) {
        let readings = &self.readings;
        rewatch(&mut self.threads, inputs, |input| {
            let (input, tx) = (input.clone(), readings.clone());
            LineThread::spawn(format!("sysfs-gpio{}", input.gpio), move |stop| {
                watch_sysfs(&input, &tx, &stop)
            })
        });
    }
}

fn watch_sysfs(input: &InputConfig, readings: &mpsc::UnboundedSender<Reading>, stop: &AtomicBool) {
    let pin = sysfs_gpio::Pin::new(input.gpio.into());
    let claimed = (|| {
        if !pin.is_exported() {
            pin.export()?;
        }
        pin.set_direction(sysfs_gpio::Direction::In)
    })();
    if let Err(e) = claimed {
        tracing::error!("input gpio {}: {e}", input.gpio);
        return;
    }
    let mut poller = match pin.set_edge(sysfs_gpio::Edge::BothEdges) {
        Ok(()) => pin.get_poller().map_err(|e| e.to_string()),
        Err(e) => Err(format!("edge: {e}")),
    }
    .map_err(|e| {
        tracing::info!(
            "input gpio {}: no edge interrupts ({e}): reading it every {} ms",
            input.gpio,
            SYSFS_POLL_PERIOD.as_millis()
        )
    })
    .ok();
    let mut last = None;
    while !stop.load(Ordering::Relaxed) {
        match &mut poller {
            Some(poller) => {
                if let Err(e) = poller.poll(100) {
                    tracing::warn!("input gpio {}: {e}", input.gpio);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            None => std::thread::sleep(SYSFS_POLL_PERIOD),
        }
        // A value being rewritten can read empty: the next read has it.
        let Ok(level) = pin.get_value() else {
            continue;
        };
        let active = input.is_active(level);
        if last != Some(active) {
            let _ = readings.send(Reading {
                gpio: input.gpio,
                active,
                initial: last.is_none(),
            });
            last = Some(active);
        }
    }
    drop(poller);
    if let Err(e) = pin.unexport() {
        tracing::warn!("input gpio {}: {e}", input.gpio);
    }
}

/// The GPIO character device: each line is requested as an input with edge
/// detection on both edges, `active_low` applied by the kernel, and the kernel's
/// debounce for the input's `debounce_ms` when the kernel takes it (else none
/// there: the software debounce does it alone). A thread waits for its edge
/// events.
pub struct CdevInputs {
    chip: PathBuf,
    readings: mpsc::UnboundedSender<Reading>,
    threads: HashMap<LineKey, LineThread>,
}

impl CdevInputs {
    pub fn new(chip: PathBuf, readings: mpsc::UnboundedSender<Reading>) -> CdevInputs {
        CdevInputs {
            chip,
            readings,
            threads: HashMap::new(),
        }
    }
}

impl Watcher for CdevInputs {
    fn watch(&mut self, inputs: &[InputConfig]) {
        let (chip, readings) = (&self.chip, &self.readings);
        rewatch(&mut self.threads, inputs, |input| {
            let (input, tx, chip) = (input.clone(), readings.clone(), chip.clone());
            LineThread::spawn(format!("cdev-line{}", input.gpio), move |stop| {
                watch_cdev(&chip, &input, &tx, &stop)
            })
        });
    }
}

fn request_input(
    chip: &Path,
    input: &InputConfig,
    debounce: Option<Duration>,
) -> gpiocdev::Result<gpiocdev::Request> {
    let mut builder = gpiocdev::Request::builder();
    builder
        .on_chip(chip)
        .with_consumer("doorphone-relay")
        .with_line(input.gpio)
        .as_input()
        .with_edge_detection(gpiocdev::line::EdgeDetection::BothEdges);
    if input.active_low {
        builder.as_active_low();
    }
    if let Some(period) = debounce {
        builder.with_debounce_period(period);
    }
    builder.request()
}

fn watch_cdev(
    chip: &Path,
    input: &InputConfig,
    readings: &mpsc::UnboundedSender<Reading>,
    stop: &AtomicBool,
) {
    let request = match request_input(chip, input, Some(input.debounce)) {
        Ok(request) => request,
        Err(e) => {
            tracing::info!(
                "{} line {}: no kernel debounce ({e}): software debounce only",
                chip.display(),
                input.gpio
            );
            match request_input(chip, input, None) {
                Ok(request) => request,
                Err(e) => {
                    tracing::error!("{} line {} (input): {e}", chip.display(), input.gpio);
                    return;
                }
            }
        }
    };
    let send = |active, initial| {
        let _ = readings.send(Reading {
            gpio: input.gpio,
            active,
            initial,
        });
    };
    match request.lone_value() {
        Ok(value) => send(value == gpiocdev::line::Value::Active, true),
        Err(e) => tracing::warn!("{} line {}: {e}", chip.display(), input.gpio),
    }
    while !stop.load(Ordering::Relaxed) {
        let event = match request.wait_edge_event(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => request.read_edge_event(),
            Err(e) => Err(e),
        };
        match event {
            Ok(event) => send(event.kind == gpiocdev::line::EdgeKind::Rising, false),
            Err(e) => {
                tracing::warn!("{} line {}: {e}", chip.display(), input.gpio);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// No hardware: the levels of the input lines are written, one `GPIO LEVEL`
/// line at a time (`23 0`, `23 1`; electrical levels, so an `active_low` button
/// is pressed by `0`), to a named pipe the service reads in a thread. The pipe is
/// opened for reading and writing, so writers may come and go (`echo 23 0 >
/// PATH`); it is made (`mkfifo`) when missing. A regular file works too: lines
/// appended to it are read within 10 ms. Every line rests inactive until told
/// otherwise.
pub struct SimInputs {
    lines: Arc<Mutex<HashMap<u32, InputConfig>>>,
}

impl SimInputs {
    /// Starts reading `path`.
    pub fn new(path: &Path, readings: mpsc::UnboundedSender<Reading>) -> io::Result<SimInputs> {
        if !path.exists() {
            let status = std::process::Command::new("mkfifo")
                .arg("-m")
                .arg("0620")
                .arg(path)
                .status()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "mkfifo {}: {status}",
                    path.display()
                )));
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let lines = Arc::new(Mutex::new(HashMap::<u32, InputConfig>::new()));
        let known = lines.clone();
        std::thread::Builder::new()
            .name("sim-inputs".into())
            .spawn(move || read_sim(BufReader::new(file), &known, &readings))?;
        Ok(SimInputs { lines })
    }
}

/// One line of the simulated inputs' pipe: `GPIO LEVEL`.
pub fn parse_sim_line(line: &str) -> Option<(u32, u8)> {
    let mut words = line.split_whitespace();
    let gpio = words.next()?.parse().ok()?;
    let level = match words.next()? {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    words.next().is_none().then_some((gpio, level))
}

fn read_sim(
    mut reader: impl BufRead,
    lines: &Mutex<HashMap<u32, InputConfig>>,
    readings: &mpsc::UnboundedSender<Reading>,
) {
    let mut text = String::new();
    loop {
        match reader.read_line(&mut text) {
            // The end of a regular file: wait for more.
            Ok(0) => {
                std::thread::sleep(SYSFS_POLL_PERIOD);
                continue;
            }
            Ok(_) if !text.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::error!("simulated inputs: {e}");
                return;
            }
        }
        let line = std::mem::take(&mut text);
        if line.trim().is_empty() {
            continue;
        }
        let Some((gpio, level)) = parse_sim_line(&line) else {
            tracing::warn!("simulated inputs: {:?} is not `GPIO 0|1`", line.trim_end());
            continue;
        };
        let input = lines.lock().ok().and_then(|l| l.get(&gpio).cloned());
        match input {
            Some(input) => {
                let _ = readings.send(Reading {
                    gpio,
                    active: input.is_active(level),
                    initial: false,
                });
            }
            None => tracing::warn!("simulated inputs: gpio {gpio} is not an input"),
        }
    }
}

impl Watcher for SimInputs {
    fn watch(&mut self, inputs: &[InputConfig]) {
        if let Ok(mut lines) = self.lines.lock() {
            *lines = inputs.iter().map(|i| (i.gpio, i.clone())).collect();
        }
    }
}

/// No inputs can be watched (the sim without `--sim-inputs`).
pub struct NoInputs;

impl Watcher for NoInputs {
    fn watch(&mut self, inputs: &[InputConfig]) {
        if !inputs.is_empty() {
            tracing::warn!(
                "{} inputs are configured but cannot be watched (--gpio sim without --sim-inputs)",
                inputs.len()
            );
        }
    }
}

enum Command {
    Configure(Vec<InputConfig>, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The way to the inputs task.
#[derive(Clone)]
pub struct Inputs {
    commands: mpsc::UnboundedSender<Command>,
}

impl Inputs {
    /// Watches exactly `inputs` from now on (the same list again changes
    /// nothing).
    pub async fn configure(&self, inputs: Vec<InputConfig>) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Configure(inputs, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Stops watching every line and ends the task.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

struct Line {
    config: InputConfig,
    debouncer: Debouncer,
}

/// Starts the inputs task with no inputs: `readings` is what `watcher` sends,
/// presses open doors through `doors` and call buttons go out as
/// [`Event::ButtonPressed`] on `events`.
pub fn spawn(
    watcher: Box<dyn Watcher>,
    readings: mpsc::UnboundedReceiver<Reading>,
    doors: Handle,
    events: mpsc::UnboundedSender<Event>,
) -> Inputs {
    let (commands, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(watcher, readings, rx, doors, events));
    Inputs { commands }
}

/// `watcher` set to watch `inputs`, on a blocking thread: stopping a line's
/// thread waits for its poll to end.
async fn watch(mut watcher: Box<dyn Watcher>, inputs: Vec<InputConfig>) -> Box<dyn Watcher> {
    tokio::task::spawn_blocking(move || {
        watcher.watch(&inputs);
        watcher
    })
    .await
    .expect("the input watcher does not panic")
}

async fn run(
    mut watcher: Box<dyn Watcher>,
    mut readings: mpsc::UnboundedReceiver<Reading>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    doors: Handle,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut lines: Vec<Line> = Vec::new();
    loop {
        let deadline = lines.iter().filter_map(|l| l.debouncer.deadline()).min();
        let due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Configure(inputs, done)) => {
                    let current: Vec<InputConfig> = lines.iter().map(|l| l.config.clone()).collect();
                    if current != inputs {
                        lines = configure(lines, &inputs);
                        let count = inputs.len();
                        watcher = watch(watcher, inputs).await;
                        tracing::info!(inputs = count, "watching the inputs");
                    }
                    let _ = done.send(());
                }
                Some(Command::Shutdown(done)) => {
                    watch(watcher, Vec::new()).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    watch(watcher, Vec::new()).await;
                    return;
                }
            },
            Some(reading) = readings.recv() => {
                if let Some(line) = lines.iter_mut().find(|l| l.config.gpio == reading.gpio) {
                    if reading.initial {
                        line.debouncer.reset(reading.active);
                    } else {
                        line.debouncer.read(Instant::now(), reading.active);
                    }
                }
            }
            () = due => {
                let now = Instant::now();
                for line in &mut lines {
                    if line.debouncer.step(now) == Some(true) {
                        press(&line.config, &doors, &events).await;
                    }
                }
            }
        }
    }
}

/// The lines of `inputs`; a line that stays keeps its debounce state.
fn configure(old: Vec<Line>, inputs: &[InputConfig]) -> Vec<Line> {
    let mut old: HashMap<LineKey, Line> = old.into_iter().map(|l| (key(&l.config), l)).collect();
    inputs
        .iter()
        .map(|config| match old.remove(&key(config)) {
            Some(line) => Line {
                config: config.clone(),
                debouncer: line.debouncer,
            },
            None => Line {
                config: config.clone(),
                debouncer: Debouncer::new(config.debounce),
            },
        })
        .collect()
}

async fn press(input: &InputConfig, doors: &Handle, events: &mpsc::UnboundedSender<Event>) {
    match &input.action {
        Action::Opens(relay) => {
            tracing::info!(gpio = input.gpio, %relay, "exit button pressed");
            match doors
                .open(relay, doorphone_interfaces::relay::source::INPUT)
                .await
            {
                Ok(()) => {}
                Err(OpenError::NotFound) => {
                    tracing::warn!(
                        gpio = input.gpio,
                        "input opens relay {relay}, which is not configured"
                    )
                }
                Err(OpenError::Failed(e)) => tracing::error!(gpio = input.gpio, "{e}"),
            }
        }
        Action::Presses(button) => {
            tracing::info!(gpio = input.gpio, button, "call button pressed");
            let _ = events.send(Event::ButtonPressed { button: *button });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_level_counts_once_stable_for_the_debounce_time() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(50));
        d.read(t0, true);
        assert_eq!(d.deadline(), Some(t0 + ms(50)));
        assert_eq!(d.step(t0 + ms(49)), None);
        assert_eq!(d.step(t0 + ms(50)), Some(true));
        assert_eq!(d.deadline(), None);
        d.read(t0 + ms(100), false);
        assert_eq!(d.step(t0 + ms(150)), Some(false));
    }

    #[test]
    fn a_bounce_shorter_than_the_debounce_time_is_forgotten() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(50));
        d.read(t0, true);
        d.read(t0 + ms(10), false);
        assert_eq!(d.deadline(), None);
        // Each bounce restarts the wait.
        d.read(t0 + ms(20), true);
        d.read(t0 + ms(30), false);
        d.read(t0 + ms(40), true);
        assert_eq!(d.deadline(), Some(t0 + ms(90)));
        assert_eq!(d.step(t0 + ms(90)), Some(true));
    }

    #[test]
    fn the_resting_level_is_no_press() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(50));
        d.reset(true);
        assert_eq!(d.deadline(), None);
        d.read(t0, false);
        assert_eq!(d.step(t0 + ms(50)), Some(false));
    }

    #[test]
    fn sim_lines_are_a_gpio_and_a_level() {
        assert_eq!(parse_sim_line("23 1\n"), Some((23, 1)));
        assert_eq!(parse_sim_line(" 4\t0 "), Some((4, 0)));
        for bad in ["23", "23 2", "x 1", "23 1 1", ""] {
            assert_eq!(parse_sim_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn active_low_inputs_are_pressed_by_a_low_level() {
        let input = |active_low| InputConfig {
            gpio: 23,
            active_low,
            debounce: ms(50),
            action: Action::Presses(1),
        };
        assert!(input(true).is_active(0));
        assert!(!input(true).is_active(1));
        assert!(input(false).is_active(1));
    }

    #[derive(Clone, Default)]
    struct Watched(Arc<Mutex<Vec<Vec<u32>>>>);

    impl Watcher for Watched {
        fn watch(&mut self, inputs: &[InputConfig]) {
            self.0
                .lock()
                .unwrap()
                .push(inputs.iter().map(|i| i.gpio).collect());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_button_press_is_an_event_and_a_bounce_is_not() {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let doors = crate::controller::spawn(
            Box::new(crate::gpio::Sim::new(None)),
            crate::gpio::Claims::load(None).unwrap(),
            events_tx.clone(),
        );
        let (readings_tx, readings) = mpsc::unbounded_channel();
        let watched = Watched::default();
        let inputs = spawn(Box::new(watched.clone()), readings, doors, events_tx);
        let config = vec![InputConfig {
            gpio: 24,
            active_low: true,
            debounce: ms(30),
            action: Action::Presses(3),
        }];
        inputs.configure(config.clone()).await;
        inputs.configure(config).await;
        assert_eq!(*watched.0.lock().unwrap(), [vec![24]], "watched once");
        let read = |active| {
            readings_tx
                .send(Reading {
                    gpio: 24,
                    active,
                    initial: false,
                })
                .unwrap()
        };
        read(true);
        tokio::time::sleep(ms(5)).await;
        read(false);
        tokio::time::sleep(ms(100)).await;
        while let Ok(event) = events.try_recv() {
            assert_eq!(event, Event::StatesChanged, "nothing but the relays");
        }
        read(true);
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .unwrap();
        assert_eq!(event, Some(Event::ButtonPressed { button: 3 }));
        inputs.shutdown().await;
        assert_eq!(
            watched.0.lock().unwrap().last().unwrap(),
            &Vec::<u32>::new()
        );
    }
}
