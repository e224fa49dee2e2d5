//! The one thread every drawing runs on, for the engine's lifetime. CUDA
//! graphs of the UNet step are kept per thread (`ops::cuda_graph`: candle
//! caches what a capture uploads on the capturing thread), and tokio's
//! blocking threads end after ten idle seconds, so drawing on them would
//! capture the graphs again for the first job after every pause. The worker
//! draws one job or batch at a time, so one thread loses no concurrency.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::EngineError;

type Work = Box<dyn FnOnce() + Send>;

/// Work for the drawing thread, started on first use.
static WORK: LazyLock<Option<mpsc::Sender<Work>>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Work>();
    let started = std::thread::Builder::new()
        .name("wordup-draw".into())
        .spawn(move || receiver.into_iter().for_each(|work| work()));
    match started {
        Ok(_) => Some(sender),
        Err(error) => {
            tracing::error!(%error, "no drawing thread; drawing on tokio's blocking threads");
            None
        }
    }
});

/// `work()` on the drawing thread (on a blocking thread of tokio's if that
/// thread could not start); a panic in it is an error, as with
/// `spawn_blocking`.
pub(super) async fn on_draw_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let panicked = |what: String| EngineError::Image(format!("drawing panicked: {what}"));
    let Some(sender) = WORK.as_ref() else {
        return tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| panicked(e.to_string()))?;
    };
    let (done, result) = oneshot::channel();
    let job: Work = Box::new(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
    });
    sender
        .send(job)
        .map_err(|_| EngineError::Image("the drawing thread has stopped".into()))?;
    match result.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(panic_message(panic.as_ref()))),
        Err(_) => Err(EngineError::Image("the drawing thread has stopped".into())),
    }
}

/// What a panic said, where it said it as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_one_lasting_thread_and_a_panic_is_an_error() {
        let first = on_draw_thread(|| Ok(std::thread::current().id()))
            .await
            .expect("the first work");
        let name = on_draw_thread(|| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .expect("the second work");
        assert_eq!(name.as_deref(), Some("wordup-draw"));
        let error = on_draw_thread::<()>(|| panic!("a bad tensor"))
            .await
            .expect_err("a panic");
        assert!(error.to_string().contains("a bad tensor"), "{error}");
        // The thread outlives a panic in its work.
        let again = on_draw_thread(|| Ok(std::thread::current().id()))
            .await
            .expect("work after the panic");
        assert_eq!(again, first);
        assert_ne!(first, std::thread::current().id());
    }
}
