//! systemd integration (`Type=notify`): `READY=1` once start-up recovery is done,
//! `STATUS=` one-line summaries, `WATCHDOG=1` from the batch loop (not a timer thread, so a
//! stuck loop stops the pings and systemd restarts sluice), `STOPPING=1` on shutdown.
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use sd_notify::NotifyState;
use tracing::debug;

/// Sends notifications to systemd, if sluice runs under it.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// Ping interval: half of `WATCHDOG_USEC`, as systemd recommends.
    watchdog_every: Option<Duration>,
    last_ping: Mutex<Option<Instant>>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .map(|us| Duration::from_micros(us) / 2);
        Notifier {
            enabled,
            watchdog_every: watchdog_every.filter(|_| enabled),
            last_ping: Mutex::new(None),
        }
    }

    /// A notifier that sends nothing (one-shot commands, tests).
    pub fn disabled() -> Self {
        Notifier {
            enabled: false,
            watchdog_every: None,
            last_ping: Mutex::new(None),
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    pub fn status(&self, line: &str) {
        self.send(&[NotifyState::Status(line)]);
    }

    /// Pings the watchdog if one is configured and a ping is due.
    pub fn watchdog(&self) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        let Ok(mut last) = self.last_ping.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        *last = Some(Instant::now());
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, state) {
            debug!(error = %e, "sd_notify failed");
        }
    }
}
