//! The door relay: a GPIO line pulsed active for a while (a door strike or a gate
//! controller's input). [`GpioRelay`] drives a real line through the Linux GPIO
//! character device (`gpiocdev`); [`RecordingRelay`] records pulses where no GPIO chip
//! exists (tests, and these build machines: no chip and no gpio-sim).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("GPIO {chip} line {line}: {message}")]
pub struct RelayError {
    pub chip: String,
    pub line: u32,
    pub message: String,
}

/// Something that opens the door for a moment. Blocking: called on a blocking thread.
pub trait Relay: Send + Sync {
    /// Holds the output active for `pulse`, then inactive again.
    fn pulse(&self, pulse: Duration) -> Result<(), RelayError>;
    /// Where the pulse goes (for the visit's record).
    fn describe(&self) -> String;
}

/// A line of a GPIO chip, requested for the length of each pulse (so another program
/// may read it in between) and released inactive.
#[derive(Debug)]
pub struct GpioRelay {
    chip: PathBuf,
    line: u32,
    active_low: bool,
    /// One pulse at a time: a second visit during a pulse waits for it.
    busy: Mutex<()>,
}

impl GpioRelay {
    /// `chip` is a path (`/dev/gpiochip0`) or a chip name (`gpiochip0`).
    pub fn new(chip: &str, line: u32, active_low: bool) -> GpioRelay {
        let path = if chip.contains('/') {
            PathBuf::from(chip)
        } else {
            PathBuf::from("/dev").join(chip)
        };
        GpioRelay {
            chip: path,
            line,
            active_low,
            busy: Mutex::new(()),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> RelayError {
        RelayError {
            chip: self.chip.display().to_string(),
            line: self.line,
            message: e.to_string(),
        }
    }
}

impl Relay for GpioRelay {
    fn pulse(&self, pulse: Duration) -> Result<(), RelayError> {
        use gpiocdev::line::Value;
        let _one = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer("facegate-door")
            .with_line(self.line)
            .as_output(Value::Inactive);
        if self.active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| self.error(e))?;
        request
            .set_value(self.line, Value::Active)
            .map_err(|e| self.error(e))?;
        std::thread::sleep(pulse);
        let released = request.set_value(self.line, Value::Inactive);
        drop(request);
        released.map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        format!("{} line {}", self.chip.display(), self.line)
    }
}

/// Records pulses instead of driving a line (for machines without a GPIO chip); can
/// be told to fail, as a missing chip would.
#[derive(Debug, Default)]
pub struct RecordingRelay {
    pulses: Mutex<Vec<Duration>>,
    fail: Mutex<Option<String>>,
}

impl RecordingRelay {
    /// The pulses so far.
    pub fn pulses(&self) -> Vec<Duration> {
        self.pulses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on every pulse fails with `message` (None: succeeds again).
    pub fn fail_with(&self, message: Option<&str>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = message.map(str::to_string);
    }
}

impl Relay for RecordingRelay {
    fn pulse(&self, pulse: Duration) -> Result<(), RelayError> {
        if let Some(message) = self.fail.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(RelayError {
                chip: "recording".into(),
                line: 0,
                message,
            });
        }
        self.pulses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pulse);
        Ok(())
    }

    fn describe(&self) -> String {
        "recording relay".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_gpio_chip_is_an_error_naming_chip_and_line() {
        let relay = GpioRelay::new("gpiochip-facegate-missing", 17, true);
        let e = relay.pulse(Duration::from_millis(1)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/dev/gpiochip-facegate-missing") && text.contains("line 17"),
            "{text}"
        );
    }
}
