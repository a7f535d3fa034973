//! `wardwatch up`: admit, ingest-lab, evaluate-alert and the ward board in one process.
//!
//! With no URLs everything is embedded (memory state, in-process bus). With Redis and RabbitMQ
//! URLs the same handlers use them, and this process consumes `lab-feed`, `lab-resulted` and
//! `adt-feed` from RabbitMQ itself. With `--mllp` / `MLLP_LISTEN` it also takes HL7 v2 over
//! MLLP ([`mllp`]).

pub mod demo;
pub mod mllp;

use std::sync::Arc;

use admit::Admit;
use admit::capabilities::Capabilities;
use admit::feed::AdtFeed;
use admit::hl7v2::Hl7v2;
use evaluate_alert::{Escalate, EvaluateAlert};
use ingest_lab::search::ObservationSearch;
use ingest_lab::{IngestLab, LabSettings};
use tokio::net::TcpListener;
use wardwatch_adapters::launch::{self, Wiring};
use wardwatch_adapters::{Bus, Log, Store};
use wardwatch_board::Board;
use wardwatch_domain::lanes::{ADT_FEED, ESCALATE, LAB_FEED, LAB_RESULTED};
use wardwatch_records::rejects::Replay;
use wardwatch_runtime::{App, Event, Function, Trigger};

/// The queues `wardwatch up` consumes itself.
pub const INPUTS: &[&str] = &[LAB_FEED, LAB_RESULTED, ADT_FEED];

/// Every route of the all-in-one process.
pub fn app(wiring: &Wiring) -> App {
    routes(wiring).0
}

/// The routes, and where MLLP messages go (the same admit and the same lab-feed delivery).
fn routes(wiring: &Wiring) -> (App, mllp::Route<Store, Log, Bus>) {
    let identity = &wiring.config.identity;
    let zone = wiring.config.zone;
    let admit = Arc::new(Admit::new(wiring.records(), identity.clone()));
    let app = wiring
        .app()
        .fhir("/fhir", admit.clone())
        .endpoint("/fhir/metadata", Capabilities::new(true))
        .endpoint(
            "/hl7v2",
            Hl7v2::new(admit.clone(), identity.clone(), zone).with_rules(wiring.config.rules.clone()),
        )
        .binding(
            ADT_FEED,
            Arc::new(AdtFeed::new(admit.clone(), identity.clone(), zone).with_rules(wiring.config.rules.clone())),
        )
        .binding(
            LAB_FEED,
            Arc::new(IngestLab::with_settings(
                wiring.records(),
                LabSettings::from_config(&wiring.config),
            )),
        )
        .binding(
            LAB_RESULTED,
            Arc::new(EvaluateAlert::new(wiring.records(), (*wiring.config.rules).clone())),
        )
        .binding(ESCALATE, Arc::new(Escalate::new(wiring.records())))
        .endpoint(
            "/fhir/Observation",
            ObservationSearch::new(wiring.records(), identity.clone(), "/fhir"),
        )
        .endpoint(
            "/",
            Board::new(wiring.records(), wiring.config.board_token.clone()).with_rules(wiring.config.rules.clone()),
        )
        .build();
    let route = mllp::Route::new(
        Hl7v2::new(admit, identity.clone(), zone).with_rules(wiring.config.rules.clone()),
        app.deliverer(LAB_FEED),
    );
    (app, route)
}

/// Put kept rejected deliveries back on their lanes: `only` one handle, else all of them that
/// can be (whole payloads), oldest first. Returns the handles replayed.
pub async fn replay_rejected(config: wardwatch_runtime::Config, only: Option<&str>) -> Result<Vec<String>, String> {
    let wiring = Wiring::new(config, wardwatch_runtime::Metrics::new())?;
    let rejects = wardwatch_records::rejects::Rejects::new(wiring.store.clone());
    let handles: Vec<String> = match only {
        Some(h) => vec![h.to_owned()],
        None => {
            let mut list = rejects.list(chrono::Utc::now()).await.map_err(|e| e.to_string())?;
            list.reverse();
            list.into_iter().filter(|r| r.replayable).map(|r| r.handle).collect()
        }
    };
    let mut done = Vec::new();
    for h in handles {
        match rejects.replay(&h, &wiring.bus).await {
            Ok(Replay::Replayed) => done.push(h),
            Ok(Replay::NotFound) => {
                return Err(format!(
                    "no rejected delivery with handle {h} (GET /api/rejected lists them)"
                ));
            }
            Ok(Replay::Truncated { kept, of }) => {
                return Err(format!(
                    "{h}: only the first {kept} of {of} bytes were kept, so it cannot be replayed: have the sender send it again"
                ));
            }
            Err(e) => return Err(format!("replaying {h}: {e}")),
        }
    }
    Ok(done)
}

/// `up`'s escalation ticker: every `ESCALATE_EVERY`, the same handler a cron binding or a
/// PingSource calls as `POST /escalate` (none when `ESCALATE_EVERY=0`). Runs until dropped.
pub fn ticker(wiring: &Wiring) -> Option<impl Future<Output = ()> + Send + use<>> {
    let every = wiring.config.escalate_every?;
    let escalate = Escalate::new(wiring.records());
    Some(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(f) = escalate
                .call(Event::new(Trigger::Memory, ESCALATE, bytes::Bytes::new()))
                .await
            {
                tracing::warn!(kind = f.kind.as_str(), reason = %f.message, "the escalation tick failed; the next one tries again");
            }
        }
    })
}

/// At start-up: finish the transactions spanning several patients that a crash or an outage
/// left part-way (`admit::bundle`).
pub fn roll_forward(wiring: &Wiring) -> impl Future<Output = ()> + Send + use<> {
    let admit = Admit::new(wiring.records(), wiring.config.identity.clone());
    async move { admit.roll_forward_at_start().await }
}

/// Serve everything on `listener` until `shutdown`, then drain, with the escalation
/// [`ticker`] and the start-up [`roll_forward`] beside it, and the MLLP listener when
/// `MLLP_LISTEN` (`--mllp`) names an address (the `wardwatch` binary runs this).
pub async fn up(wiring: &Wiring, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let mllp = match wiring.config.mllp_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("MLLP cannot listen on {addr}: {e}")))?,
        ),
        None => None,
    };
    up_with(wiring, listener, mllp, shutdown).await
}

/// [`up`] with the MLLP listener given (or none): tests bind it on port 0. On `shutdown`, HTTP
/// and MLLP stop taking connections; each MLLP connection finishes (and answers) the message
/// in hand before the queue consumers and the relay stop.
pub async fn up_with(
    wiring: &Wiring,
    listener: TcpListener,
    mllp: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let ticker = ticker(wiring).map(tokio::spawn);
    let rolled = tokio::spawn(roll_forward(wiring));
    let (app, route) = routes(wiring);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let limits = wardwatch_runtime::mllp::Limits::new(wiring.config.max_body_bytes);
    let mllp = mllp.map(|l| {
        tokio::spawn(wardwatch_runtime::mllp::serve(l, Arc::new(route), limits, async move {
            wardwatch_runtime::amqp::stopped(&mut stop_rx).await;
        }))
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        if let Some(m) = mllp {
            let _ = m.await;
        }
    };
    let served = launch::run(wiring, app, listener, INPUTS, shutdown).await;
    if let Some(t) = ticker {
        t.abort();
    }
    rolled.abort();
    served
}
