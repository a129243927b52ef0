//! Requests to stop: the signals that ask a training run to checkpoint at the end of its step and
//! end (`modernft train --resume` continues it exactly).
//!
//! | signal  | who sends it |
//! |---------|--------------|
//! | SIGINT  | Ctrl-C in the terminal; `kill -INT` |
//! | SIGTERM | Open MPI's `mpirun` to every rank on Ctrl-C (SIGCONT first, SIGTERM `odls_base_sigkill_timeout` seconds later, SIGKILL as many after that; 1 s unless raised); Slurm at the time limit and on `scancel` (SIGKILL after `KillWait`, 30 s); `docker stop`, Kubernetes |
//! | SIGUSR1 | `mpirun` forwards it to every rank and kills nothing: `kill -USR1 <mpirun's pid>`; Slurm's `--signal=USR1@120` before the time limit |
//!
//! The first such signal is a request; a second (any of them) quits at once with 128 + its number,
//! as the shell reports a killed process (two sent within microseconds of each other arrive as one). Under MPI the request of any rank stops every rank at the
//! same step (the trainer asks the ranks each step).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;

/// Which of [`NAMES`] asked this process to stop, plus one; 0 while none has.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// The signals [`listen`] takes as requests.
const NAMES: [&str; 3] = ["SIGINT", "SIGTERM", "SIGUSR1"];

/// The name of the signal that asked this process to stop, if one has.
pub fn requested() -> Option<&'static str> {
    REQUESTED.load(Ordering::SeqCst).checked_sub(1).and_then(|i| NAMES.get(i).copied())
}

/// Takes SIGINT, SIGTERM and SIGUSR1 from now on (their default actions end the process at once):
/// the first is a request to stop, a second quits. `echo` prints what the first means (one rank
/// of several keeps quiet: rank 0 speaks for the job).
#[cfg(unix)]
pub fn listen(echo: bool) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let [int, term, usr1] = [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::user_defined1()];
    // Registered here, before this returns: a signal sent from now on is never the default kill.
    let (mut a, mut b, mut c) = {
        let _inside = runtime.enter();
        (signal(int)?, signal(term)?, signal(usr1)?)
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async move {
            loop {
                let (index, number) = tokio::select! {
                    _ = a.recv() => (0, int.as_raw_value()),
                    _ = b.recv() => (1, term.as_raw_value()),
                    _ = c.recv() => (2, usr1.as_raw_value()),
                };
                on_signal(index, number, echo);
            }
        })
    })?;
    Ok(())
}

/// Elsewhere only Ctrl-C is a request.
#[cfg(not(unix))]
pub fn listen(echo: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                on_signal(0, 2, echo);
            }
        })
    })?;
    Ok(())
}

/// The first request is recorded (and said, with `echo`); a second quits with 128 + `number`.
fn on_signal(index: usize, number: i32, echo: bool) {
    if REQUESTED.compare_exchange(0, index + 1, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        std::process::exit(128 + number);
    }
    if echo {
        eprintln!("\n{}: saving a checkpoint at the end of this step, then stopping (send it again to quit at once)", NAMES[index]);
    }
}
