//! Progress of the benchmark programs on stderr: a bar over the runs when their number
//! is known, a spinner with the current scenario otherwise. Drawn only when stderr is
//! a terminal (indicatif hides it otherwise), so logs and pipes stay clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress display for one program.
#[derive(Debug, Clone)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `total` runs, labelled `what`.
    pub fn bar(what: &str, total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress(bar)
    }

    /// A spinner labelled `what`, for runs whose number is not known in advance.
    pub fn spinner(what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress(bar)
    }

    /// Now running `message`.
    pub fn stage(&self, message: impl Into<String>) {
        self.0.set_message(message.into());
    }

    /// One run done.
    pub fn advance(&self) {
        self.0.inc(1);
    }

    /// All done: clear the line.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
