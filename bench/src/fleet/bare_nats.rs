//! The references of the NATS figures: the same client library (`async-nats`) against the
//! same server, with nothing of SPUD in between — what the engine itself does here.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures_util::stream::{FuturesOrdered, StreamExt};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Publishes `n` messages shaped as the output's (a subject per key, `TIME KEY VALUE`, an
/// id each) to `stream`, `window` awaiting acknowledgement at once: messages/s.
pub fn publish(url: &str, stream: &str, n: usize, window: usize) -> Result<f64> {
    runtime()?.block_on(async {
        let client = async_nats::connect(url).await?;
        let js = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(window)
            .build(client);
        let subject = stream.to_lowercase();
        js.get_or_create_stream(jetstream::stream::Config {
            name: stream.into(),
            subjects: vec![format!("{subject}.>")],
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        let mut awaiting: FuturesOrdered<
            <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture,
        > = FuturesOrdered::new();
        for i in 0..n {
            if awaiting.len() >= window {
                awaiting
                    .next()
                    .await
                    .context("an ack")?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let key = format!("flood.k{}", i % 1000);
            let message = PublishMessage::build()
                .payload(format!("1600000000 {key} {i}").into())
                .message_id(format!("bare-{i}"));
            let ack = js
                .send_publish(format!("{subject}.{key}"), message)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            awaiting.push_back(ack.into_future());
        }
        while let Some(ack) = awaiting.next().await {
            ack.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    })
}

/// Reads `n` messages of `stream` through a durable pull consumer of its own, acknowledging
/// each, as the `nats` collector does: messages/s.
pub fn consume(url: &str, stream: &str, durable: &str, n: usize) -> Result<f64> {
    runtime()?.block_on(async {
        let client = async_nats::connect(url).await?;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                durable,
                consumer::pull::Config {
                    durable_name: Some(durable.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: 200_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut started = None;
        let mut read = 0;
        while read < n {
            let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .context("no message for 30 s")?
                .context("the messages ended")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            started.get_or_insert_with(Instant::now);
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            read += 1;
        }
        Ok(n as f64 / started.context("nothing read")?.elapsed().as_secs_f64())
    })
}
