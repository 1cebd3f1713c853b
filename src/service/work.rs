//! Bounded pool for CPU-heavy work: at most `workers` jobs run on the blocking pool, at most
//! `queue` more wait; anything beyond is shed at once with UNAVAILABLE instead of queueing.
//! A job's embeddings use the cores idle when it starts: all of them at concurrency 1, one each
//! once every worker is busy, so a lone request is fast and throughput under load is unchanged.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::error::ServiceError;

/// The admission control in front of the analysis workers.
#[derive(Debug, Clone)]
pub struct WorkPool {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    capacity: usize,
    workers: usize,
    max_embed_threads: usize,
}

impl WorkPool {
    /// `workers` concurrent jobs and `queue` waiting ones.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            capacity: workers + queue,
            workers,
            max_embed_threads: cores(),
        }
    }

    /// Caps the threads one job's embedding may use at `max` (0: the number of CPUs).
    pub fn with_embed_threads(mut self, max: usize) -> Self {
        self.max_embed_threads = if max == 0 { cores() } else { max };
        self
    }

    /// Threads a job starting now may use: the idle workers plus its own, at most the cap.
    fn idle_threads(&self) -> usize {
        let running = self.workers - self.running.available_permits().min(self.workers);
        (self.workers + 1)
            .saturating_sub(running.max(1))
            .clamp(1, self.max_embed_threads.max(1))
    }

    /// Waits until no job is running. Jobs whose callers went away keep running to completion on
    /// the blocking pool (they cannot be interrupted); shutdown waits for them so that nothing
    /// still holds the store when the server reports it has stopped.
    pub async fn drain(&self) {
        let workers = u32::try_from(self.workers).unwrap_or(u32::MAX);
        // Only fails if the semaphore is closed, which this type never does.
        let _ = self.running.acquire_many(workers).await;
    }

    /// Jobs admitted (running or waiting).
    pub fn depth(&self) -> usize {
        self.capacity - self.admitted.available_permits()
    }

    /// Runs `job` on the blocking pool once a worker is free; fails fast when the queue is full.
    /// If the caller goes away (deadline, cancellation) while waiting, the job never starts.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| ServiceError::Overloaded("analysis queue is full, retry later"))?;
        metrics::gauge!("voiceprint_queue_depth").set(self.depth() as f64);
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("worker pool closed".into()))?;
        let threads = self.idle_threads();
        let result = tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            crate::pipeline::with_embed_threads(threads, job)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")));
        metrics::gauge!("voiceprint_queue_depth").set(self.depth() as f64);
        result
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Runs a short blocking job (store access) off the async runtime, without admission control.
pub async fn blocking<T, F>(job: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServiceError> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sheds_beyond_capacity() {
        let pool = WorkPool::new(1, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p1 = pool.clone();
        let first = tokio::spawn(async move { p1.run(move || rx.recv().is_ok()).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let p2 = pool.clone();
        let second = tokio::spawn(async move { p2.run(|| 2).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pool.depth(), 2);
        assert!(matches!(
            pool.run(|| 3).await,
            Err(ServiceError::Overloaded(_))
        ));
        tx.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(pool.depth(), 0);
    }

    #[tokio::test]
    async fn drain_waits_for_abandoned_jobs() {
        let pool = WorkPool::new(2, 2);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = Arc::clone(&done);
        let p = pool.clone();
        let caller = tokio::spawn(async move {
            p.run(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                d.store(true, std::sync::atomic::Ordering::SeqCst);
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        caller.abort(); // the client went away; the job itself runs on
        pool.drain().await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn embed_threads_follow_idle_workers() {
        let threads = || crate::pipeline::scoped_embed_threads().unwrap_or(0);
        let pool = WorkPool::new(3, 2).with_embed_threads(8);
        assert_eq!(
            pool.run(threads).await.unwrap(),
            3,
            "alone: every worker's core"
        );
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p1 = pool.clone();
        let busy = tokio::spawn(async move { p1.run(move || rx.recv().is_ok()).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pool.run(threads).await.unwrap(), 2, "one other job running");
        let capped = pool.clone().with_embed_threads(1);
        assert_eq!(capped.run(threads).await.unwrap(), 1, "capped");
        tx.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
        assert_eq!(
            WorkPool::new(2, 0).run(threads).await.unwrap(),
            2.min(cores()),
            "default cap: the CPUs"
        );
    }
}
