//! Votes on results and a channel's board: its results, newest or most
//! voted first, for the board page.

use chrono::NaiveDate;

use crate::Queue;
use crate::error::Result;
use crate::model::{Job, JobId};
use crate::row::{JOB_COLUMNS, JobRow};

/// What a 👍 press did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// True when the press added the presser's vote, false when it took it back.
    pub added: bool,
    /// Votes on the result now.
    pub total: i64,
}

/// How a board orders its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoardOrder {
    #[default]
    Newest,
    MostVoted,
}

/// Which of a channel's results a board shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardQuery {
    pub platform: String,
    pub channel_id: String,
    /// Only this user's results ("mine").
    pub user_id: Option<String>,
    /// Only results finished on this UTC day.
    pub day: Option<NaiveDate>,
    pub order: BoardOrder,
    pub limit: i64,
}

/// One stored image of a result, without its bytes.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BoardImage {
    pub idx: i32,
    pub width: i32,
    pub height: i32,
    pub seed: i64,
    pub score: Option<f32>,
}

/// A result on a board.
#[derive(Debug, Clone)]
pub struct BoardEntry {
    pub job: Job,
    pub votes: i64,
    pub images: Vec<BoardImage>,
}

impl Queue {
    /// Adds `user`'s vote on `job`'s result, or takes it back if it was there.
    pub async fn toggle_vote(&self, job: JobId, platform: &str, user: &str) -> Result<Vote> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query(
            "DELETE FROM job_votes WHERE job_id = $1 AND platform = $2 AND user_id = $3",
        )
        .bind(job.0)
        .bind(platform)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !removed {
            sqlx::query("INSERT INTO job_votes (job_id, platform, user_id) VALUES ($1, $2, $3)")
                .bind(job.0)
                .bind(platform)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        let total = votes_in(&mut tx, job).await?;
        tx.commit().await?;
        Ok(Vote {
            added: !removed,
            total,
        })
    }

    /// Votes on `job`'s result.
    pub async fn votes(&self, job: JobId) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        votes_in(&mut conn, job).await
    }

    /// A channel's results with stored images, as `query` asks.
    pub async fn board(&self, query: &BoardQuery) -> Result<Vec<BoardEntry>> {
        let order = match query.order {
            BoardOrder::Newest => "jobs.finished_at DESC, jobs.id DESC",
            BoardOrder::MostVoted => "votes DESC, jobs.finished_at DESC, jobs.id DESC",
        };
        let sql = format!(
            "SELECT {JOB_COLUMNS}, \
                    (SELECT count(*) FROM job_votes v WHERE v.job_id = jobs.id) AS votes \
             FROM jobs \
             WHERE jobs.platform = $1 AND jobs.channel_id = $2 AND jobs.state = 'succeeded' \
               AND ($3::text IS NULL OR jobs.user_id = $3) \
               AND ($4::date IS NULL OR (jobs.finished_at AT TIME ZONE 'UTC')::date = $4) \
               AND EXISTS (SELECT 1 FROM job_images i WHERE i.job_id = jobs.id) \
             ORDER BY {order} LIMIT $5"
        );
        let found: Vec<JobRowWithVotes> = sqlx::query_as(&sql)
            .bind(&query.platform)
            .bind(&query.channel_id)
            .bind(&query.user_id)
            .bind(query.day)
            .bind(query.limit)
            .fetch_all(&self.pool)
            .await?;
        let mut entries = Vec::with_capacity(found.len());
        for row in found {
            let votes = row.votes;
            let job = Job::try_from(row.job)?;
            let images = self.image_list(job.id).await?;
            entries.push(BoardEntry { job, votes, images });
        }
        Ok(entries)
    }

    /// A job's stored images, without their bytes, in order.
    pub async fn image_list(&self, job: JobId) -> Result<Vec<BoardImage>> {
        Ok(sqlx::query_as(
            "SELECT idx, width, height, seed, score FROM job_images WHERE job_id = $1 ORDER BY idx",
        )
        .bind(job.0)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A channel's latest jobs in any state, newest first (the playground's).
    pub async fn channel_jobs(
        &self,
        platform: &str,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE platform = $1 AND channel_id = $2 \
             ORDER BY enqueued_at DESC, id DESC LIMIT $3"
        ))
        .bind(platform)
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Job::try_from).collect()
    }
}

#[derive(sqlx::FromRow)]
struct JobRowWithVotes {
    #[sqlx(flatten)]
    job: JobRow,
    votes: i64,
}

async fn votes_in(conn: &mut sqlx::PgConnection, job: JobId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM job_votes WHERE job_id = $1")
            .bind(job.0)
            .fetch_one(conn)
            .await?,
    )
}
