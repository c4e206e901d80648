//! The backends that drive relay lines: the kernel's sysfs GPIO interface, the
//! GPIO character device, or a simulation that logs each transition to a file.
//!
//! Every line a backend claims is also written to the claims file, so that
//! `--release-all` (run by systemd after the service stopped, crashes included)
//! can drive those lines inactive without the configuration.

use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One relay's output line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Line {
    pub relay: String,
    pub gpio: u32,
    /// The relay is energised by a low level.
    pub active_low: bool,
}

impl Line {
    /// The electrical level (0 or 1) that leaves the relay energised or not.
    pub fn level(&self, energised: bool) -> u8 {
        u8::from(energised != self.active_low)
    }
}

/// Drives relay lines.
pub trait Backend: Send {
    /// Drives `line` energised or not, claiming it as an output first if needed.
    fn drive(&mut self, line: &Line, energised: bool) -> io::Result<()>;
    /// Drives `line` inactive and gives it back to the system.
    fn release(&mut self, line: &Line) -> io::Result<()>;
}

/// The lines a backend has claimed, kept in a file of `RELAY GPIO ACTIVE_LOW`
/// lines.
pub struct Claims {
    path: Option<PathBuf>,
    lines: BTreeSet<Line>,
}

impl Claims {
    /// The claims recorded in `path`, with what a previous run left there;
    /// `None` records nothing.
    pub fn load(path: Option<PathBuf>) -> io::Result<Claims> {
        let text = match &path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e),
            },
            None => String::new(),
        };
        let lines = text
            .lines()
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                Some(Line {
                    relay: fields.next()?.to_owned(),
                    gpio: fields.next()?.parse().ok()?,
                    active_low: fields.next()? == "1",
                })
            })
            .collect();
        Ok(Claims { path, lines })
    }

    /// Every claimed line.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.iter().cloned().collect()
    }

    pub fn add(&mut self, line: &Line) -> io::Result<()> {
        if self.lines.insert(line.clone()) {
            self.save()?;
        }
        Ok(())
    }

    pub fn remove(&mut self, line: &Line) -> io::Result<()> {
        if self.lines.remove(line) {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text: String = self
            .lines
            .iter()
            .map(|l| format!("{} {} {}\n", l.relay, l.gpio, u8::from(l.active_low)))
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

/// The kernel's sysfs GPIO interface (`/sys/class/gpio`): the line is exported
/// and made an output at its inactive level, and unexported on release.
pub struct Sysfs {
    claimed: HashMap<u32, sysfs_gpio::Pin>,
}

impl Sysfs {
    pub fn new() -> Sysfs {
        Sysfs {
            claimed: HashMap::new(),
        }
    }
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new()
    }
}

fn sysfs_error(line: &Line, e: sysfs_gpio::Error) -> io::Error {
    io::Error::other(format!("gpio {} (relay {}): {e}", line.gpio, line.relay))
}

impl Backend for Sysfs {
    fn drive(&mut self, line: &Line, energised: bool) -> io::Result<()> {
        let level = line.level(energised);
        let pin = match self.claimed.get(&line.gpio) {
            Some(pin) => *pin,
            None => {
                let pin = sysfs_gpio::Pin::new(line.gpio.into());
                pin.export().map_err(|e| sysfs_error(line, e))?;
                // `out` starts the output low and `high` high: either way the
                // line never passes through the other level.
                let direction = if level == 0 {
                    sysfs_gpio::Direction::Out
                } else {
                    sysfs_gpio::Direction::High
                };
                pin.set_direction(direction)
                    .map_err(|e| sysfs_error(line, e))?;
                self.claimed.insert(line.gpio, pin);
                pin
            }
        };
        pin.set_value(level).map_err(|e| sysfs_error(line, e))
    }

    fn release(&mut self, line: &Line) -> io::Result<()> {
        let pin = self
            .claimed
            .remove(&line.gpio)
            .unwrap_or_else(|| sysfs_gpio::Pin::new(line.gpio.into()));
        if !pin.is_exported() {
            pin.export().map_err(|e| sysfs_error(line, e))?;
            pin.set_direction(if line.level(false) == 0 {
                sysfs_gpio::Direction::Out
            } else {
                sysfs_gpio::Direction::High
            })
            .map_err(|e| sysfs_error(line, e))?;
        }
        pin.set_value(line.level(false))
            .map_err(|e| sysfs_error(line, e))?;
        pin.unexport().map_err(|e| sysfs_error(line, e))
    }
}

/// The GPIO character device (`/dev/gpiochipN`): each line is requested as an
/// output at its inactive level, with the kernel applying `active_low`.
pub struct Cdev {
    chip: PathBuf,
    requests: HashMap<u32, gpiocdev::Request>,
}

impl Cdev {
    pub fn new(chip: PathBuf) -> Cdev {
        Cdev {
            chip,
            requests: HashMap::new(),
        }
    }

    fn request(&self, line: &Line, energised: bool) -> io::Result<gpiocdev::Request> {
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer("doorphone-relay")
            .with_line(line.gpio)
            .as_output(value(energised));
        if line.active_low {
            builder.as_active_low();
        }
        builder
            .request()
            .map_err(|e| cdev_error(line, &self.chip, e))
    }
}

fn value(energised: bool) -> gpiocdev::line::Value {
    if energised {
        gpiocdev::line::Value::Active
    } else {
        gpiocdev::line::Value::Inactive
    }
}

fn cdev_error(line: &Line, chip: &Path, e: gpiocdev::Error) -> io::Error {
    io::Error::other(format!(
        "{} line {} (relay {}): {e}",
        chip.display(),
        line.gpio,
        line.relay
    ))
}

impl Backend for Cdev {
    fn drive(&mut self, line: &Line, energised: bool) -> io::Result<()> {
        match self.requests.get(&line.gpio) {
            Some(request) => request
                .set_value(line.gpio, value(energised))
                .map_err(|e| cdev_error(line, &self.chip, e)),
            None => {
                let request = self.request(line, energised)?;
                self.requests.insert(line.gpio, request);
                Ok(())
            }
        }
    }

    fn release(&mut self, line: &Line) -> io::Result<()> {
        let request = match self.requests.remove(&line.gpio) {
            Some(request) => request,
            None => self.request(line, false)?,
        };
        request
            .set_value(line.gpio, value(false))
            .map_err(|e| cdev_error(line, &self.chip, e))
    }
}

/// No hardware: each line's state in memory, and every transition appended to
/// a log as `SECONDS.MICROS RELAY on|off gpio=N level=L` (seconds since the Unix
/// epoch).
pub struct Sim {
    log: Option<PathBuf>,
    levels: HashMap<u32, u8>,
}

impl Sim {
    pub fn new(log: Option<PathBuf>) -> Sim {
        Sim {
            log,
            levels: HashMap::new(),
        }
    }

    fn record(&self, line: &Line, energised: bool) -> io::Result<()> {
        let Some(path) = &self.log else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(
            file,
            "{}.{:06} {} {} gpio={} level={}",
            now.as_secs(),
            now.subsec_micros(),
            line.relay,
            if energised { "on" } else { "off" },
            line.gpio,
            line.level(energised)
        )
    }
}

impl Backend for Sim {
    fn drive(&mut self, line: &Line, energised: bool) -> io::Result<()> {
        self.levels.insert(line.gpio, line.level(energised));
        self.record(line, energised)
    }

    fn release(&mut self, line: &Line) -> io::Result<()> {
        self.levels.remove(&line.gpio);
        self.record(line, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(active_low: bool) -> Line {
        Line {
            relay: "A".into(),
            gpio: 17,
            active_low,
        }
    }

    #[test]
    fn active_low_inverts_the_level() {
        assert_eq!(line(false).level(true), 1);
        assert_eq!(line(false).level(false), 0);
        assert_eq!(line(true).level(true), 0);
        assert_eq!(line(true).level(false), 1);
    }

    #[test]
    fn claims_survive_in_their_file() {
        let dir = std::env::temp_dir().join(format!("relay-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines");
        let mut claims = Claims::load(Some(path.clone())).unwrap();
        assert!(claims.lines().is_empty());
        claims.add(&line(true)).unwrap();
        let b = Line {
            relay: "B".into(),
            gpio: 4,
            active_low: false,
        };
        claims.add(&b).unwrap();
        let read = |path: &Path| Claims::load(Some(path.to_path_buf())).unwrap().lines();
        assert_eq!(read(&path), vec![line(true), b.clone()]);
        claims.remove(&b).unwrap();
        assert_eq!(read(&path), vec![line(true)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_sim_logs_each_transition() {
        let dir = std::env::temp_dir().join(format!("relay-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relays.log");
        let mut sim = Sim::new(Some(path.clone()));
        sim.drive(&line(true), true).unwrap();
        sim.release(&line(true)).unwrap();
        let log = std::fs::read_to_string(&path).unwrap();
        let words: Vec<Vec<&str>> = log
            .lines()
            .map(|l| l.split_whitespace().skip(1).collect())
            .collect();
        assert_eq!(
            words,
            [
                ["A", "on", "gpio=17", "level=0"],
                ["A", "off", "gpio=17", "level=1"]
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cdev_without_a_chip_fails_with_the_chip_named() {
        let mut cdev = Cdev::new("/nonexistent/gpiochip9".into());
        let e = cdev.drive(&line(false), false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/gpiochip9"), "{e}");
    }
}
