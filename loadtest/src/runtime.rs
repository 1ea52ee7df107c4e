//! Building a monoio runtime with the driver asked for.

use std::future::Future;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    Uring,
    Epoll,
}

/// Runs `make()`'s future to completion on a fresh runtime on this thread.
pub fn run_on_runtime<F, Fut>(driver: Driver, make: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if driver != Driver::Epoll {
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(4096)
            .enable_timer()
            .build()
        {
            Ok(mut rt) => {
                rt.block_on(make());
                return;
            }
            Err(e) if driver == Driver::Auto => {
                eprintln!("io_uring unavailable ({e}); using epoll");
            }
            Err(e) => {
                eprintln!("io_uring unavailable: {e}");
                std::process::exit(1);
            }
        }
    }
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => rt.block_on(make()),
        Err(e) => {
            eprintln!("cannot build epoll runtime: {e}");
            std::process::exit(1);
        }
    }
}
