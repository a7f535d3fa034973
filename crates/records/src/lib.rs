//! The patient-record repository every function shares: load a record, let a pure decision
//! change it, write it back with its ETag (compare-and-set), and only then carry out the side
//! effects the decision queued in the record's outbox — ward and work-list indexes, the event log,
//! the lanes.
//!
//! - **Compare-and-set**: a conflicting write reloads and decides again, after a jittered,
//!   growing pause; still contended after [`ATTEMPTS`] tries it is `Unavailable` (transient: the
//!   caller answers 503 / requeues, and the whole delivery is tried again).
//! - **Per-patient serialisation within a process** ([`Locks`]): two deliveries for one patient
//!   in one process take turns, so conflicts only come from other processes.
//! - **The outbox**: side effects are queued in the record by the decision and so written
//!   atomically with it. After the write they are drained in order: index updates (idempotent),
//!   then the event appended to the log (exactly once per item, by the log's per-patient mark),
//!   which in the same step queues it on the log's lane outbox. A crash in between leaves them
//!   in the record; the next load of that record (the redelivery, or any later write) drains
//!   them again. The mark tells which are done, so the next write drops them.
//! - **The lanes**: the [`relay`] publishes the lane outbox on the lanes (at least once) and only
//!   then confirms it, off the request path and in batches. A repository not told that a relay
//!   runs ([`Records::relayed`]) publishes what it appended itself before it answers.

pub mod rejects;
mod relay;

pub use relay::{publish_waiting, relay};

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wardwatch_domain::identity::Identifier;
use wardwatch_domain::keys;
use wardwatch_domain::ports::{
    Appended, CREATE_ONLY_ETAG, EventLog, Membership, PortError, Publisher, StateStore, Versioned, get_json,
    parse_json, put_json,
};
use wardwatch_domain::record::{Action, PatientRecord};

/// How many times a contended write is tried before the delivery is handed back as transient.
pub const ATTEMPTS: usize = 16;

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(50))
        .with_max_times(ATTEMPTS)
        .with_jitter()
        .build()
}

/// Per-patient turn-taking within one process: a fixed set of async locks, a patient hashed to
/// one. Cheap to clone; one per process (every function of the process shares it).
#[derive(Clone)]
pub struct Locks(Arc<Vec<tokio::sync::Mutex<()>>>);

impl Default for Locks {
    fn default() -> Self {
        Self(Arc::new((0..1024).map(|_| tokio::sync::Mutex::new(())).collect()))
    }
}

impl Locks {
    pub async fn lock(&self, patient_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::hash::DefaultHasher::new();
        patient_id.hash(&mut h);
        let i = (h.finish() % self.0.len() as u64) as usize;
        self.0[i].lock().await
    }
}

/// A decision's verdict for [`Records::update`].
#[allow(clippy::large_enum_variant)] // made once per decision and consumed at once
pub enum Step<T> {
    /// Nothing to write.
    Keep(T),
    /// Write `record`; first write `resources` (key → JSON bytes) that it refers to.
    Write {
        record: PatientRecord,
        resources: Vec<(String, Vec<u8>)>,
        out: T,
    },
}

/// A ward's (or the work list's) members: patient id → the outbox sequence that last put them
/// there. Sized to a ward.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Members {
    #[serde(default)]
    pub patients: BTreeMap<String, u64>,
}

/// The ward names seen so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wards {
    #[serde(default)]
    pub wards: Vec<String>,
}

/// Which record an identifier belongs to (`ident-…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentIndex {
    pub patient_id: String,
}

/// What claiming an identifier for a patient found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    HeldBy(String),
}

/// A record read ahead, in the same round trip as something else: the first attempt of
/// [`Records::update_claiming_from`] for that patient starts from it instead of reading again
/// (a stale one only costs a conflict and a fresh read).
#[derive(Debug, Clone)]
pub struct Prefetched {
    patient_id: String,
    found: Option<Versioned>,
}

/// The repository. Cheap to clone.
#[derive(Clone)]
pub struct Records<S, L, P> {
    pub store: S,
    pub log: L,
    pub bus: P,
    locks: Locks,
    known_wards: Arc<Mutex<HashSet<String>>>,
    /// `Some`: no relay runs, so drains publish what they appended, as this relay name, one at a
    /// time.
    inline: Option<Arc<(String, tokio::sync::Mutex<()>)>>,
}

impl<S: StateStore, L: EventLog, P: Publisher> Records<S, L, P> {
    pub fn new(store: S, log: L, bus: P, locks: Locks) -> Self {
        Self {
            store,
            log,
            bus,
            locks,
            known_wards: Arc::default(),
            inline: Some(Arc::new((relay::inline_name(), tokio::sync::Mutex::new(())))),
        }
    }

    /// A [`relay`] publishes this process's lane outbox: drains leave publishing to it.
    pub fn relayed(mut self) -> Self {
        self.inline = None;
        self
    }

    /// A record as stored, or `None`.
    pub async fn load(&self, patient_id: &str) -> Result<Option<PatientRecord>, PortError> {
        Ok(get_json::<PatientRecord, S>(&self.store, &keys::record(patient_id))
            .await?
            .map(|(r, _)| r))
    }

    /// Load → decide → compare-and-set under the patient's turn, then drain. `decide` is called
    /// again with the fresh record after every conflict, so it must be pure. The turn is given
    /// up before the drain: a drain may wait on a lane whose consumer needs a turn of its own
    /// (the in-process bus is bounded), and drains are safe to run side by side.
    pub async fn update<T, E, F>(&self, patient_id: &str, decide: F) -> Result<T, E>
    where
        E: From<PortError>,
        F: FnMut(Option<PatientRecord>) -> Result<Step<T>, E>,
    {
        self.update_claiming(patient_id, &[], decide).await.map(|(out, _)| out)
    }

    /// [`Records::update`], and with the record's write, point each of `identifiers` that no
    /// index holds yet at this patient (one round trip where the store can). Per identifier,
    /// whether it was claimed here; one that was not (held already, nothing written, or a store
    /// that cannot tell) is for [`Records::claim`], which says by whom.
    pub async fn update_claiming<T, E, F>(
        &self,
        patient_id: &str,
        identifiers: &[Identifier],
        decide: F,
    ) -> Result<(T, Vec<bool>), E>
    where
        E: From<PortError>,
        F: FnMut(Option<PatientRecord>) -> Result<Step<T>, E>,
    {
        self.update_claiming_from(patient_id, identifiers, None, decide).await
    }

    /// [`Records::update_claiming`], starting from `prefetched` when it is this patient's.
    pub async fn update_claiming_from<T, E, F>(
        &self,
        patient_id: &str,
        identifiers: &[Identifier],
        prefetched: Option<Prefetched>,
        decide: F,
    ) -> Result<(T, Vec<bool>), E>
    where
        E: From<PortError>,
        F: FnMut(Option<PatientRecord>) -> Result<Step<T>, E>,
    {
        let first = prefetched.filter(|p| p.patient_id == patient_id).map(|p| p.found);
        let claims = identifiers
            .iter()
            .map(|i| {
                let index = IdentIndex {
                    patient_id: patient_id.to_owned(),
                };
                serde_json::to_vec(&index)
                    .map(|v| (keys::identifier(&i.system, &i.value), v))
                    .map_err(|e| PortError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (out, claimed, to_drain) = {
            let _turn = self.locks.lock(patient_id).await;
            self.write(patient_id, &claims, first, decide).await?
        };
        match to_drain {
            Some((record, indexed)) => self.drain_after(&record, indexed).await?,
            // Nothing left to drain, but maybe appended and not published (a publish that failed).
            None => {
                if let Some(inline) = &self.inline {
                    let _one_at_a_time = inline.1.lock().await;
                    publish_waiting(&self.log, &self.bus, &inline.0).await?;
                }
            }
        }
        Ok((out, claimed))
    }

    /// The compare-and-set loop of [`Records::update`]: what to answer, which claims were
    /// written with the record, and the record whose outbox is to be drained, with whether its
    /// index changes were made with the write.
    async fn write<T, E, F>(
        &self,
        patient_id: &str,
        claims: &[(String, Vec<u8>)],
        mut first: Option<Option<Versioned>>,
        mut decide: F,
    ) -> Result<(T, Vec<bool>, Option<(PatientRecord, bool)>), E>
    where
        E: From<PortError>,
        F: FnMut(Option<PatientRecord>) -> Result<Step<T>, E>,
    {
        let key = keys::record(patient_id);
        let mut written: HashSet<String> = HashSet::new();
        let mut pauses = backoff();
        loop {
            let found = match first.take() {
                Some(found) => found,
                None => self.store.get(&key).await?,
            };
            let (current, etag) = match found.map(|v| parse_json::<PatientRecord>(&key, v)).transpose()? {
                Some((mut r, etag)) => {
                    // Drained items stay in the record until a write: the log's mark says which.
                    if !r.outbox.is_empty() {
                        let mark = self.log.mark(&r.outbox_owner()).await?;
                        r.prune_outbox(mark.as_ref());
                    }
                    (Some(r), Some(etag))
                }
                None => (None, None),
            };
            let leftover = current.as_ref().filter(|r| !r.outbox.is_empty()).cloned();
            match decide(current)? {
                Step::Keep(out) => return Ok((out, vec![false; claims.len()], leftover.map(|r| (r, false)))),
                Step::Write { record, resources, out } => {
                    // The resources it refers to first, then the record, in one round trip
                    // where the store can: a refused record leaves only resource versions that
                    // nothing refers to yet. A missing record is created with an ETag no entry
                    // has: a second creator racing us gets a conflict instead of overwriting.
                    let mut items: Vec<(String, Vec<u8>, Option<String>)> = resources
                        .into_iter()
                        .filter(|(k, _)| written.insert(k.clone()))
                        .map(|(k, v)| (k, v, None))
                        .collect();
                    let data = serde_json::to_vec(&record).map_err(|e| PortError::Corrupt(e.to_string()))?;
                    items.push((
                        key.clone(),
                        data,
                        Some(etag.unwrap_or_else(|| CREATE_ONLY_ETAG.to_owned())),
                    ));
                    // The record's index changes ride on its write where the store can: the
                    // drain then only appends its events.
                    let members = memberships(&record);
                    // The ward list names a ward before any index of it does.
                    for p in &record.outbox {
                        if let Action::PlaceOnWard { ward } = &p.action {
                            self.remember_ward(ward).await?;
                        }
                    }
                    match self.store.set_many_claim_and_members(&items, claims, &members).await {
                        Ok((claimed, indexed)) => {
                            return Ok((out, claimed, (!record.outbox.is_empty()).then_some((record, indexed))));
                        }
                        Err(PortError::Conflict) => match pauses.next() {
                            Some(pause) => tokio::time::sleep(pause).await,
                            None => {
                                return Err(PortError::Unavailable(format!(
                                    "a patient record was still contended after {ATTEMPTS} attempts"
                                ))
                                .into());
                            }
                        },
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Carry out a record's outbox, in order. Safe to run again: index changes are idempotent,
    /// the log appends (and queues for the lanes) each item once.
    pub async fn drain(&self, record: &PatientRecord) -> Result<(), PortError> {
        self.drain_after(record, false).await
    }

    /// [`Records::drain`], the index changes left out when `indexed` (made with the write).
    async fn drain_after(&self, record: &PatientRecord, indexed: bool) -> Result<(), PortError> {
        let pid = record.id.as_str();
        let owner = record.outbox_owner();
        let mut events = false;
        for p in &record.outbox {
            match &p.action {
                Action::Event { event } => {
                    let _: Appended = self.log.append(&owner, p.seq, event).await?;
                    events = true;
                }
                _ if indexed => {}
                Action::PlaceOnWard { ward } => {
                    self.remember_ward(ward).await?;
                    self.set_member(&keys::ward(ward, pid), pid, p.seq, true).await?;
                }
                Action::RemoveFromWard { ward } => self.set_member(&keys::ward(ward, pid), pid, p.seq, false).await?,
                Action::ListUnplaced => self.set_member(keys::UNPLACED, pid, p.seq, true).await?,
                Action::UnlistUnplaced => self.set_member(keys::UNPLACED, pid, p.seq, false).await?,
                Action::ListForReview => self.set_member(keys::REVIEW, pid, p.seq, true).await?,
                Action::UnlistForReview => self.set_member(keys::REVIEW, pid, p.seq, false).await?,
            }
        }
        if events && let Some(inline) = &self.inline {
            let _one_at_a_time = inline.1.lock().await;
            publish_waiting(&self.log, &self.bus, &inline.0).await?;
        }
        Ok(())
    }

    /// Add or remove a member, unless a later outbox item of that patient already did.
    async fn set_member(&self, key: &str, pid: &str, seq: u64, present: bool) -> Result<(), PortError> {
        if self.store.set_member(key, pid, seq, present).await? {
            return Ok(());
        }
        self.cas::<Members, _>(key, |m| match (present, m.patients.get(pid).copied()) {
            (true, Some(s)) if s >= seq => false,
            (true, _) => {
                m.patients.insert(pid.to_owned(), seq);
                true
            }
            (false, Some(s)) if s < seq => {
                m.patients.remove(pid);
                true
            }
            (false, _) => false,
        })
        .await
    }

    async fn remember_ward(&self, ward: &str) -> Result<(), PortError> {
        let known = self
            .known_wards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(ward);
        if !known {
            self.cas::<Wards, _>(keys::WARDS, |w| {
                if w.wards.iter().any(|x| x == ward) {
                    false
                } else {
                    w.wards.push(ward.to_owned());
                    true
                }
            })
            .await?;
            self.known_wards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ward.to_owned());
        }
        Ok(())
    }

    /// Read-modify-write of a small shared value under its ETag, with jittered retries.
    pub async fn cas<T, F>(&self, key: &str, mut change: F) -> Result<(), PortError>
    where
        T: Serialize + DeserializeOwned + Default,
        F: FnMut(&mut T) -> bool,
    {
        let mut pauses = backoff();
        loop {
            let (mut value, etag) = match get_json::<T, S>(&self.store, key).await? {
                Some((v, e)) => (v, e),
                None => (T::default(), CREATE_ONLY_ETAG.to_owned()),
            };
            if !change(&mut value) {
                return Ok(());
            }
            match put_json(&self.store, key, &value, Some(&etag)).await {
                Ok(()) => return Ok(()),
                Err(PortError::Conflict) => match pauses.next() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        return Err(PortError::Unavailable(format!(
                            "{} still contended after {ATTEMPTS} attempts",
                            keys::kind(key)
                        )));
                    }
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Which record an identifier belongs to.
    pub async fn lookup(&self, identifier: &Identifier) -> Result<Option<String>, PortError> {
        Ok(
            get_json::<IdentIndex, S>(&self.store, &keys::identifier(&identifier.system, &identifier.value))
                .await?
                .map(|(i, _)| i.patient_id),
        )
    }

    /// [`Records::lookup`], and in the same round trip where the store can, the record of
    /// `candidate`: the patient the identifier most likely belongs to (the id it was given, or
    /// the one its identity derives).
    pub async fn lookup_and_prefetch(
        &self,
        identifier: &Identifier,
        candidate: &str,
    ) -> Result<(Option<String>, Prefetched), PortError> {
        let index_key = keys::identifier(&identifier.system, &identifier.value);
        let mut found = self
            .store
            .get_many(&[index_key.clone(), keys::record(candidate)])
            .await?
            .into_iter();
        let (index, record) = (found.next().flatten(), found.next().flatten());
        let holder = index
            .map(|v| parse_json::<IdentIndex>(&index_key, v))
            .transpose()?
            .map(|(i, _)| i.patient_id);
        Ok((
            holder,
            Prefetched {
                patient_id: candidate.to_owned(),
                found: record,
            },
        ))
    }

    /// Point an identifier at a patient, unless it already points at another. Written only after
    /// the record it points at. A conflict on the create is re-read before it counts as "held":
    /// a Redis-backed Dapr store reports any script error on an ETag write as a conflict.
    pub async fn claim(&self, identifier: &Identifier, patient_id: &str) -> Result<Claim, PortError> {
        let key = keys::identifier(&identifier.system, &identifier.value);
        let index = IdentIndex {
            patient_id: patient_id.to_owned(),
        };
        for _ in 0..3 {
            match put_json(&self.store, &key, &index, Some(CREATE_ONLY_ETAG)).await {
                Ok(()) => return Ok(Claim::Claimed),
                Err(PortError::Conflict) => match self.lookup(identifier).await? {
                    Some(holder) if holder == patient_id => return Ok(Claim::Claimed),
                    Some(holder) => return Ok(Claim::HeldBy(holder)),
                    None => continue,
                },
                Err(e) => return Err(e),
            }
        }
        Err(PortError::Unavailable("the identifier index refused the write".into()))
    }

    /// Move an identifier from one record to another (joining results that came first).
    pub async fn repoint(&self, identifier: &Identifier, from: &str, to: &str) -> Result<(), PortError> {
        let key = keys::identifier(&identifier.system, &identifier.value);
        match get_json::<IdentIndex, S>(&self.store, &key).await? {
            Some((i, etag)) if i.patient_id == from => {
                let index = IdentIndex {
                    patient_id: to.to_owned(),
                };
                match put_json(&self.store, &key, &index, Some(&etag)).await {
                    Ok(()) | Err(PortError::Conflict) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Some(_) => Ok(()),
            None => self.claim(identifier, to).await.map(|_| ()),
        }
    }

    /// Join the record `pending` (results that came before their patient) into `into`: point
    /// the identifier at `into`, mark the early record joined — from then on whatever reaches it
    /// goes on to `into` — and copy what it holds, as it was when marked, into `into`'s record.
    /// The early record keeps its copy (the trail, and the source for evaluations that reach it
    /// late); copying is idempotent.
    pub async fn join(
        &self,
        pending: &str,
        identifier: &Identifier,
        into: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        use wardwatch_domain::decide::admission::{absorb, closed_into};
        self.repoint(identifier, pending, into).await?;
        let snapshot = self
            .update(pending, |record| {
                Ok::<_, PortError>(match record {
                    Some(r) if r.merged_into.is_none() && !r.known => {
                        let d = closed_into(r, into, now);
                        let snapshot = d.record.clone();
                        Step::Write {
                            record: d.record,
                            resources: Vec::new(),
                            out: Some(snapshot),
                        }
                    }
                    Some(r) if r.merged_into.as_deref() == Some(into) => Step::Keep(Some(r)),
                    _ => Step::Keep(None),
                })
            })
            .await?;
        let Some(snapshot) = snapshot else { return Ok(()) };
        self.update(into, |record| {
            let d = absorb(record, into, &snapshot, now);
            Ok::<_, PortError>(if d.changed {
                Step::Write {
                    record: d.record,
                    resources: Vec::new(),
                    out: (),
                }
            } else {
                Step::Keep(())
            })
        })
        .await?;
        tracing::info!(
            patient_id = into,
            joined = pending,
            "results that came before the patient were joined to its record"
        );
        Ok(())
    }

    /// The wards seen so far.
    pub async fn wards(&self) -> Result<Vec<String>, PortError> {
        Ok(get_json::<Wards, S>(&self.store, keys::WARDS)
            .await?
            .map(|(w, _)| w.wards)
            .unwrap_or_default())
    }

    /// The patients a work list lists: patients on no ward with alerts nobody has acknowledged
    /// ([`keys::UNPLACED`]), or patients with an alert waiting for its review time
    /// ([`keys::REVIEW`]).
    pub async fn members(&self, key: &str) -> Result<Vec<String>, PortError> {
        Ok(get_json::<Members, S>(&self.store, key)
            .await?
            .map(|(m, _)| m.patients.into_keys().collect())
            .unwrap_or_default())
    }

    /// The patients a ward's index lists (all its shards, one read).
    pub async fn ward_members(&self, ward: &str) -> Result<Vec<String>, PortError> {
        let shards = keys::ward_shards(ward);
        let mut out = Vec::new();
        for (key, found) in shards.iter().zip(self.store.get_many(&shards).await?) {
            if let Some(v) = found {
                let m: Members = serde_json::from_slice(&v.data).map_err(|e| {
                    PortError::Corrupt(format!("{}: line {} column {}", keys::kind(key), e.line(), e.column()))
                })?;
                out.extend(m.patients.into_keys());
            }
        }
        Ok(out)
    }

    /// Several records at once (missing ones are left out).
    pub async fn load_many(&self, patient_ids: &[String]) -> Result<Vec<PatientRecord>, PortError> {
        let keys: Vec<String> = patient_ids.iter().map(|p| keys::record(p)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for (key, found) in keys.iter().zip(self.store.get_many(&keys).await?) {
            if let Some(v) = found {
                out.push(serde_json::from_slice(&v.data).map_err(|e| {
                    PortError::Corrupt(format!(
                        "{}: unexpected JSON at line {} column {}",
                        keys::kind(key),
                        e.line(),
                        e.column()
                    ))
                })?);
            }
        }
        Ok(out)
    }
}

/// The index changes a record's outbox asks for, as the store makes them.
fn memberships(record: &PatientRecord) -> Vec<Membership> {
    let pid = record.id.as_str();
    let change = |key: String, seq: u64, present: bool| Membership {
        key,
        member: pid.to_owned(),
        seq,
        present,
    };
    record
        .outbox
        .iter()
        .filter_map(|p| match &p.action {
            Action::Event { .. } => None,
            Action::PlaceOnWard { ward } => Some(change(keys::ward(ward, pid), p.seq, true)),
            Action::RemoveFromWard { ward } => Some(change(keys::ward(ward, pid), p.seq, false)),
            Action::ListUnplaced => Some(change(keys::UNPLACED.to_owned(), p.seq, true)),
            Action::UnlistUnplaced => Some(change(keys::UNPLACED.to_owned(), p.seq, false)),
            Action::ListForReview => Some(change(keys::REVIEW.to_owned(), p.seq, true)),
            Action::UnlistForReview => Some(change(keys::REVIEW.to_owned(), p.seq, false)),
        })
        .collect()
}

/// Refuse data in the first layout (one census key, `alerts-open`) with a clear message, and
/// mark a store as holding this layout.
pub async fn check_layout<S: StateStore>(store: &S) -> Result<(), String> {
    for old in keys::OLD_LAYOUT {
        if store
            .get(old)
            .await
            .map_err(|e| format!("cannot check the state layout: {e}"))?
            .is_some()
        {
            return Err(format!(
                "the state store holds data in Wardwatch's first layout (key `{old}`): this version keeps one record per patient \
                 and cannot read it. Point STATE_KEY_PREFIX at a new prefix (or another Redis database) and re-send the \
                 admissions and results, or delete the old keys (`census`, `alerts-open`, `mrn-*`, `results-*`, `alert-*`, \
                 `announced-*`, `patient-*`, `encounter-*`, `result-*` under the prefix)"
            ));
        }
    }
    #[derive(Serialize, Deserialize)]
    struct Layout {
        version: u32,
    }
    match get_json::<Layout, S>(store, keys::LAYOUT).await {
        Ok(Some((l, _))) if l.version == keys::LAYOUT_VERSION => Ok(()),
        Ok(Some((l, _))) => Err(format!(
            "the state store holds layout version {}, this Wardwatch reads version {}",
            l.version,
            keys::LAYOUT_VERSION
        )),
        Ok(None) => put_json(
            store,
            keys::LAYOUT,
            &Layout {
                version: keys::LAYOUT_VERSION,
            },
            Some(CREATE_ONLY_ETAG),
        )
        .await
        .or_else(|e| if e == PortError::Conflict { Ok(()) } else { Err(e) })
        .map_err(|e| format!("cannot mark the state layout: {e}")),
        Err(e) => Err(format!("cannot read the state layout marker: {e}")),
    }
}
