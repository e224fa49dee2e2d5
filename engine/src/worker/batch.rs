//! A claimed batch: every job planned first, the plain /imagine grids that
//! draw alike (same [`BatchShape`]) drawn as one batch through the UNet and
//! the decoder, then each job checked, stored, posted and settled on its
//! own, in its own span.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;
use wordup_queue::{ClaimedJob, Delivery, GRID_IMAGES, ImagineRequest, Job, ResultKind};

use super::Worker;
use super::draw::{self, Member};
use super::lease::{Flags, Lease};
use super::plan::{Draw, Plan};
use super::render::{BatchShape, Drawn};
use super::settle::Outcome;
use crate::error::EngineError;
use crate::sd::pipeline::Decoder;

/// A claimed job between its planning and its settlement.
struct Pending {
    job: Job,
    lease: Lease,
    span: tracing::Span,
    /// Time its planning took, counted in its duration once it is drawn.
    planning: Duration,
    planned: Planned,
    /// What it draws, until it is drawn.
    draw: Option<Draw>,
}

/// A plan's parts that outlive its drawing.
struct Planned {
    root: ImagineRequest,
    kind: ResultKind,
    what: String,
}

/// What a job drew, or how it ended instead; `None`: it was not drawn.
type DrawResult = Option<Result<Vec<Drawn>, Outcome>>;

/// The first seed and decoder of a plain /imagine grid (no image prompt,
/// no `--quality` candidates): the only draws that share a batch.
fn plain_grid(draw: &Draw) -> Option<(u64, Decoder)> {
    match draw {
        Draw::Grid {
            first_seed,
            decoder,
            candidates,
            image: None,
        } if *candidates == u32::from(GRID_IMAGES) => Some((*first_seed, *decoder)),
        _ => None,
    }
}

/// Which jobs draw together: the indices of jobs with equal shapes, each
/// group in claim order and the groups in the order of their first job; a
/// job without a shape (`None`) is a group of its own.
pub(super) fn groups<K: PartialEq>(shapes: &[Option<K>]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let joined = shape.as_ref().and_then(|shape| {
            groups
                .iter_mut()
                .find(|group| shapes[group[0]].as_ref() == Some(shape))
        });
        match joined {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

impl<D: Delivery> Worker<D> {
    /// Runs claimed jobs to their settlements. Once `shutdown` turns true,
    /// the group in hand is finished and the jobs not yet drawn are
    /// released.
    pub(super) async fn run_batch(
        &self,
        jobs: Vec<(ClaimedJob, Lease)>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let mut pending = Vec::with_capacity(jobs.len());
        for (claimed, lease) in jobs {
            let job = claimed.job;
            if *shutdown.borrow() {
                self.release(&job, lease).await;
                continue;
            }
            let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempt, kind = job.request.kind());
            let started = Instant::now();
            // A job that ends while being planned is settled at once.
            match self.prepare(&job).instrument(span.clone()).await {
                Ok(Plan { root, draw, what }) => {
                    let kind = draw.kind();
                    pending.push(Some(Pending {
                        job,
                        lease,
                        span,
                        planning: started.elapsed(),
                        planned: Planned { root, kind, what },
                        draw: Some(draw),
                    }));
                }
                Err(outcome) => {
                    self.observe_wait(&job);
                    lease.stop();
                    self.settle(&job, outcome, started).instrument(span).await;
                }
            }
        }
        // A lone job has nothing to share a batch with.
        let shapes: Vec<Option<BatchShape>> = pending
            .iter()
            .map(|p| p.as_ref().filter(|_| pending.len() > 1))
            .map(|p| p.and_then(|p| self.batch_shape(p)))
            .collect();
        for group in groups(&shapes) {
            let mut members: Vec<Pending> =
                group.iter().filter_map(|&i| pending[i].take()).collect();
            if *shutdown.borrow() {
                for member in members {
                    self.release(&member.job, member.lease).await;
                }
                continue;
            }
            // Each job's time runs from its group's start, plus its planning.
            let group_started = Instant::now();
            for member in &members {
                self.observe_wait(&member.job);
            }
            let mut drawn = self.draw_group(&mut members).await;
            // Every member is settled, drawn or not.
            drawn.resize_with(members.len(), || None);
            for (member, drawn) in members.into_iter().zip(drawn) {
                let started = group_started
                    .checked_sub(member.planning)
                    .unwrap_or(group_started);
                self.conclude(member, drawn, started).await;
            }
        }
    }

    /// What a plain grid must share with others to be drawn with them.
    fn batch_shape(&self, pending: &Pending) -> Option<BatchShape> {
        let (_, decoder) = plain_grid(pending.draw.as_ref()?)?;
        self.models.batch_shape(&pending.planned.root, decoder).ok()
    }

    /// Draws a group's plans: one job alone, several plain grids as one
    /// batch (each alone again if the batch fails).
    async fn draw_group(&self, members: &mut [Pending]) -> Vec<DrawResult> {
        let grids: Option<Vec<(u64, Decoder)>> = members
            .iter()
            .map(|m| m.draw.as_ref().and_then(plain_grid))
            .collect();
        let running = members
            .iter()
            .filter(|m| stopped(&m.lease.flags).is_none())
            .count();
        if let Some(grids) = grids.filter(|_| running > 1) {
            match self.draw_grids(members, &grids).await {
                Ok(drawn) => return drawn,
                Err(e) => {
                    let jobs = job_ids(members);
                    tracing::warn!(jobs, error = %e, "a batch of grids failed; drawing each alone");
                }
            }
        }
        let mut drawn = Vec::with_capacity(members.len());
        for member in members.iter_mut() {
            drawn.push(self.draw_one(member).await);
        }
        drawn
    }

    async fn draw_one(&self, member: &mut Pending) -> DrawResult {
        let draw = match (member.draw.take(), stopped(&member.lease.flags)) {
            (_, Some(outcome)) => return Some(Err(outcome)),
            (None, None) => return None,
            (Some(draw), None) => draw,
        };
        let drawn = self
            .draw_alone(&member.job, &member.lease.flags, &member.planned.root, draw)
            .instrument(member.span.clone())
            .await;
        Some(drawn)
    }

    /// Plain grids (`grids`: each member's first seed and decoder, one
    /// decoder for all by their shape) drawn as one batch; members already
    /// cancelled or lost are left out. An error other than every member
    /// stopping leaves the draws in place for drawing alone.
    async fn draw_grids(
        &self,
        members: &mut [Pending],
        grids: &[(u64, Decoder)],
    ) -> Result<Vec<DrawResult>, EngineError> {
        let mut together = Vec::with_capacity(members.len());
        let mut reporters = Vec::with_capacity(members.len());
        let mut drawn: Vec<DrawResult> = Vec::with_capacity(members.len());
        for (member, &(first_seed, _)) in members.iter().zip(grids) {
            if let Some(outcome) = stopped(&member.lease.flags) {
                drawn.push(Some(Err(outcome)));
                continue;
            }
            drawn.push(None);
            let (progress, reporter) = self.reporter(&member.job, &member.lease.flags);
            reporters.push(reporter);
            together.push(Member {
                flags: member.lease.flags.clone(),
                progress,
                previews: self.previews(&member.job),
                root: member.planned.root.clone(),
                first_seed,
            });
        }
        let jobs = job_ids(members);
        tracing::info!(jobs, "drawing grids as one batch");
        self.metrics.batched_grids.observe(together.len() as f64);
        let result = draw::draw_together(
            self.models.clone(),
            self.metrics.clone(),
            together,
            grids[0].1,
        )
        .await;
        for reporter in reporters {
            let _ = reporter.await;
        }
        let mut grids_drawn = match result {
            Ok(grids_drawn) => grids_drawn.into_iter(),
            Err(EngineError::Cancelled) => Vec::new().into_iter(),
            Err(e) => return Err(e),
        };
        for (member, drawn) in members.iter_mut().zip(drawn.iter_mut()) {
            if drawn.is_some() {
                continue;
            }
            member.draw = None;
            // A member cancelled or lost while the others went on ends so.
            *drawn = Some(match (stopped(&member.lease.flags), grids_drawn.next()) {
                (Some(outcome), _) => Err(outcome),
                (None, Some(images)) => Ok(images),
                (None, None) => Err(EngineError::Cancelled.into()),
            });
        }
        Ok(drawn)
    }

    /// Finishes a job with what it drew, and settles it.
    async fn conclude(&self, member: Pending, drawn: DrawResult, started: Instant) {
        let Pending {
            job,
            lease,
            span,
            planned,
            ..
        } = member;
        async {
            let outcome = match drawn {
                Some(Ok(drawn)) => {
                    let Planned { root, kind, what } = planned;
                    self.finish(&job, root, kind, what, drawn).await
                }
                Some(Err(outcome)) => outcome,
                None => Outcome::transient("the job was planned but not drawn"),
            };
            lease.stop();
            self.settle(&job, outcome, started).await;
        }
        .instrument(span)
        .await
    }

    /// Returns a job not yet drawn to the queue.
    async fn release(&self, job: &Job, lease: Lease) {
        lease.stop();
        if let Err(e) = self.queue.release(job.id, job.attempt).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not release a job");
        }
    }
}

/// The jobs' ids, for a log line.
fn job_ids(members: &[Pending]) -> String {
    let ids: Vec<String> = members.iter().map(|m| m.job.id.to_string()).collect();
    ids.join(",")
}

/// How a job of a batch ended if it was cancelled or lost while drawing.
fn stopped(flags: &Arc<Flags>) -> Option<Outcome> {
    use std::sync::atomic::Ordering;
    if flags.lost.load(Ordering::Relaxed) {
        Some(Outcome::Lost)
    } else if flags.cancel.load(Ordering::Relaxed) {
        Some(EngineError::Cancelled.into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn jobs_of_one_shape_draw_together_in_claim_order() {
        type Case = (&'static [Option<u8>], &'static [&'static [usize]]);
        let cases: &[Case] = &[
            (&[], &[]),
            (&[None], &[&[0]]),
            (&[Some(1)], &[&[0]]),
            (&[Some(1), Some(1), Some(1)], &[&[0, 1, 2]]),
            (&[Some(1), Some(2), Some(1)], &[&[0, 2], &[1]]),
            (&[None, None], &[&[0], &[1]]),
            (&[Some(1), None, Some(1), Some(2)], &[&[0, 2], &[1], &[3]]),
            (&[None, Some(2), Some(2), None], &[&[0], &[1, 2], &[3]]),
        ];
        for (shapes, expected) in cases {
            let got = groups(shapes);
            let expected: Vec<Vec<usize>> = expected.iter().map(|g| g.to_vec()).collect();
            assert_eq!(got, expected, "shapes {shapes:?}");
        }
    }
}
