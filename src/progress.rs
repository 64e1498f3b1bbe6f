//! Progress: indicatif spinners on a terminal (one per running step), plain lines otherwise.
//! `ProgressBar::println` prints nothing off a terminal, so plain mode never goes through
//! indicatif. With `--output json` the lines go to stderr, so stdout holds only the document.
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Output;
use crate::graph::Step;

#[derive(Debug)]
enum Mode {
    Tty(MultiProgress),
    Plain { stderr: bool },
    Quiet,
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    verbose: bool,
    bars: Mutex<HashMap<Step, ProgressBar>>,
    waits: Mutex<HashMap<Step, String>>,
}

impl Progress {
    pub(crate) fn new(output: Output, quiet: bool, verbose: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if output == Output::Text && std::io::stdout().is_terminal() {
            Mode::Tty(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
        } else {
            Mode::Plain {
                stderr: output == Output::Json,
            }
        };
        Progress {
            inner: Arc::new(Inner {
                mode,
                verbose,
                bars: Mutex::new(HashMap::new()),
                waits: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Progress that prints nothing (for tests and for `status`).
    pub(crate) fn silent() -> Self {
        Progress::new(Output::Text, true, false)
    }

    fn line(&self, text: &str) {
        match &self.inner.mode {
            Mode::Tty(m) => {
                let _ = m.println(text);
            }
            Mode::Plain { stderr: false } => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
            Mode::Plain { stderr: true } => eprintln!("{text}"),
            Mode::Quiet => {}
        }
    }

    /// A step began: a spinner on a terminal; nothing in plain mode (the result line follows).
    pub(crate) fn start(&self, step: Step, verb: &str) {
        if let Mode::Tty(m) = &self.inner.mode {
            let bar = m.add(ProgressBar::new_spinner());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}") {
                bar.set_style(style);
            }
            bar.set_message(format!("{verb} {}", step.key()));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.inner
                .bars
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(step, bar);
        }
    }

    /// A step is waiting on AWS (endpoint, function state, ENI release).
    pub(crate) fn wait(&self, step: Step, msg: &str) {
        if let Some(bar) = self
            .inner
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&step)
        {
            bar.set_message(format!("{}: {msg}", step.key()));
            return;
        }
        let mut waits = self
            .inner
            .waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.inner.verbose || waits.get(&step).map(String::as_str) != Some(msg) {
            waits.insert(step, msg.to_string());
            drop(waits);
            self.line(&format!("{:<10} {:<24} {msg}", "waiting", step.kind()));
        }
    }

    /// Detail shown only with `--verbose` (retries, polls).
    pub(crate) fn debug(&self, msg: &str) {
        if self.inner.verbose {
            self.line(&format!("  {msg}"));
        }
    }

    /// A step finished: one line per resource.
    pub(crate) fn done(&self, step: Step, action: &str, what: &str) {
        self.clear(step);
        self.line(&format!("{action:<10} {:<24} {what}", step.kind()));
    }

    /// A step finished with nothing worth a line.
    pub(crate) fn clear(&self, step: Step) {
        if let Some(bar) = self
            .inner
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&step)
        {
            bar.finish_and_clear();
            if let Mode::Tty(m) = &self.inner.mode {
                m.remove(&bar);
            }
        }
    }

    /// A message of its own, outside any step.
    pub(crate) fn note(&self, msg: &str) {
        self.line(msg);
    }

    /// Clears what is left of the spinners.
    pub(crate) fn finish(&self) {
        for (_, bar) in self
            .inner
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
        {
            bar.finish_and_clear();
        }
    }
}
