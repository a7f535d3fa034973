//! HL7 v2.3–2.8 ADT → the FHIR R4 Patient and Encounter admit already takes (or, for a merge,
//! who is merged into whom), and the HL7 ACK that answers each message. Pure: bytes, the hospital's settings and the time in; resources
//! (as JSON, to be validated and decided like any FHIR admission) or a refusal out. Reading
//! ER7 (character sets, MLLP framing, CR/LF/CRLF, batches, escapes, DTM) is [`er7`]'s.
//!
//! | HL7 v2 | FHIR |
//! |---|---|
//! | MSH-9 `ADT^A01 A02 A03 A04 A08 A11 A12 A13 A34 A40` (EVN-1 when MSH-9.2 is empty) | [`Trigger`]; any other event (A17, A28, A35 …) is refused by name (AR, 201) |
//! | MSH-10 | [`AdtMessage::control_id`], echoed in the ACK's MSA-2 |
//! | EVN-2, else MSH-7 | [`AdtMessage::version`]: `meta.lastUpdated` of the Patient and the Encounter |
//! | PID-3 (every repetition whose assigning authority CX-4 — namespace, else universal id — maps through `V2_IDENTIFIER_SYSTEMS`; the others are dropped) | `Patient.identifier` (`type` v2-0203 from CX-5, `assigner.display` CX-4); refused when none maps |
//! | PID-5 (every repetition; XPN-7 L D M N → `use` official usual maiden nickname) | `Patient.name` (`family`, `given`, `prefix`, `suffix`) |
//! | PID-7 (date part) | `Patient.birthDate` |
//! | PID-8 M F O A U N (other codes: unknown) | `Patient.gender` male female other other unknown unknown |
//! | PID-3, the identifier the identity rules choose | `Encounter.subject.identifier` |
//! | PV1-19 (CX-1) | `Encounter.identifier` (type VN), system: see below |
//! | PV1-2 I B / E / O R / P / C N U (empty or another code: refused) | `Encounter.class` v3-ActCode IMP / EMER / AMB / PRENC / v3-NullFlavor UNK (class is required in R4) |
//! | PV1-3.1, .2, .3 (first subcomponent: an HD from v2.7) | `Encounter.location`: point of care `wa`, room `ro`, bed `bd`; `display` the value |
//! | PV1-6 (A02 only) | `Encounter.location` with `status` completed: where the patient was moved from |
//! | PV1-44 (A01/A04 without it: EVN-6, else the version) | `Encounter.period.start` |
//! | PV1-45 (a finished stay without it: EVN-6, else the version) | `Encounter.period.end` |
//! | A40, A34: PID-3 (mapped as above) | [`Merge::survivor`]: the surviving patient, identity first (the Patient is read as above; no Encounter) |
//! | A40: MRG-1, every repetition (CX-4 through `V2_IDENTIFIER_SYSTEMS`, as PID-3; the others are dropped) | [`Merge::merged`]: the merged patient's identifiers; refused when none maps (204), when MRG-1 is empty (101), or names an identifier PID-3 names (205) |
//! | A34: MRG-1, first repetition (the patient id) | [`Merge::merged`], as for A40 |
//!
//! `Encounter.status` and what each event means:
//!
//! | Event | Status | Notes |
//! |---|---|---|
//! | A01 admit | in-progress | PV1 with PV1-19 required; an inpatient needs PV1-3.1 (a ward) |
//! | A02 transfer | in-progress | PV1-3 is the new place; a new version of the same Encounter |
//! | A03 discharge | finished | `period.end` |
//! | A04 register | arrived | never on the board (an arrival, not an admission); without PV1-19 the Patient alone |
//! | A08 update | finished when PV1-45 is given, else in-progress | without PV1-19, or for an inpatient without PV1-3.1 (a field left empty means "not sent"), the Patient alone, so an update never takes a patient off the ward |
//! | A11 cancel admit | cancelled | |
//! | A12 cancel transfer | in-progress | PV1-3 is where the patient was before the cancelled transfer |
//! | A13 cancel discharge | in-progress | no `period.end`; [`AdtMessage::cancel_discharge`] |
//! | A34, A40 merge | — | no Encounter; [`AdtMessage::merge`] (PV1 is not read). One PID/MRG pair per message (more: refused, 100); what the merge does is `decide::merge`'s |
//!
//! An Encounter is known by its visit number, so the messages of one stay are versions of one
//! Encounter; a message that needs an Encounter and has no PV1-19 is refused rather than given an
//! identity guessed from other fields. The visit number's system is, in order: `Settings::
//! visit_system`; the system of a `V2_IDENTIFIER_SYSTEMS` row for PV1-19's own authority typed
//! `VN` (`RXH^VN=…`); else `<system of the patient's identity>/visit`.
//!
//! Refusals ([`Refusal`]) name segments and fields, never patient data, and carry the HL7
//! table 0357 condition and the ACK code: AR when the message cannot be taken at all (unreadable,
//! another message type or event, another version), AE when it was read but its content cannot
//! be used. A batch is refused whole, like a lab batch. [`ack`] writes the answer (and
//! [`Refusal::ack`] the answer to a refusal); [`header`] reads a payload's MSH alone, to route it.
//!
//! A stay is ordered by the version (EVN-2 to the second, as senders write it): two events of
//! one stay in the same second settle as `decide::admission::supersedes` says, not by arrival.
//!
//! Not mapped: addresses, telecoms, next of kin, doctors (PV1-7 …), MRG-4…7 (prior account,
//! visit and names), and merges of accounts or visits (A35, A36, A41, A42: refused).

use std::fmt::{self, Write as _};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;
use hl7_parser::Message;
use hl7_parser::message::{Repeat, Segment, Separators};
use serde_json::{Map, Value, json};

use crate::identity::{Identifier, IdentityRules, RawIdentifier, V2_0203};
use crate::lab::er7::{self, component};

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const NULL_FLAVOR: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
const PHYSICAL_TYPE: &str = "http://terminology.hl7.org/CodeSystem/location-physical-type";
/// MSH-3 of an ACK when the message did not name its receiver.
const OUR_APPLICATION: &str = "WARDWATCH";
/// MSH-12 of an ACK to a message whose version could not be read.
const DEFAULT_VERSION: &str = "2.5.1";
/// The events read, for refusals.
const TAKES: &str = "A01 A02 A03 A04 A08 A11 A12 A13 A34 A40";
/// Longest identifier or visit number accepted (as the identity rules).
const MAX_IDENTIFIER: usize = 256;

/// What the mapping needs to know about the hospital.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub identity: &'a IdentityRules,
    /// Where times without an offset were written.
    pub zone: Tz,
    /// The system of visit numbers (PV1-19), when the hospital has one; see the module header.
    pub visit_system: Option<&'a str>,
}

/// The ADT events read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    A01,
    A02,
    A03,
    A04,
    A08,
    A11,
    A12,
    A13,
    /// Merge patient information, patient id only (MRG-1's first repetition).
    A34,
    /// Merge patient, patient identifier list (every repetition of MRG-1).
    A40,
}

impl Trigger {
    pub const ALL: [Trigger; 10] = [
        Trigger::A01,
        Trigger::A02,
        Trigger::A03,
        Trigger::A04,
        Trigger::A08,
        Trigger::A11,
        Trigger::A12,
        Trigger::A13,
        Trigger::A34,
        Trigger::A40,
    ];

    /// The event code (`A01` …).
    pub fn code(self) -> &'static str {
        match self {
            Trigger::A01 => "A01",
            Trigger::A02 => "A02",
            Trigger::A03 => "A03",
            Trigger::A04 => "A04",
            Trigger::A08 => "A08",
            Trigger::A11 => "A11",
            Trigger::A12 => "A12",
            Trigger::A13 => "A13",
            Trigger::A34 => "A34",
            Trigger::A40 => "A40",
        }
    }

    /// What the event does, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            Trigger::A01 => "admit",
            Trigger::A02 => "transfer",
            Trigger::A03 => "discharge",
            Trigger::A04 => "register",
            Trigger::A08 => "update patient information",
            Trigger::A11 => "cancel admit",
            Trigger::A12 => "cancel transfer",
            Trigger::A13 => "cancel discharge",
            Trigger::A34 => "merge patient information (patient id only)",
            Trigger::A40 => "merge patient (patient identifier list)",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Whether the event is about a stay, so that it cannot be read without one (PV1-19).
    fn needs_encounter(self) -> bool {
        !matches!(self, Trigger::A04 | Trigger::A08 | Trigger::A34 | Trigger::A40)
    }

    /// A merge (A34, A40): read into [`AdtMessage::merge`], never into an Encounter.
    pub fn is_merge(self) -> bool {
        matches!(self, Trigger::A34 | Trigger::A40)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Names of ADT events that are refused, for the refusal's text.
fn unsupported_meaning(event: &str) -> Option<&'static str> {
    Some(match event {
        "A05" => "pre-admit",
        "A06" => "change an outpatient to an inpatient",
        "A07" => "change an inpatient to an outpatient",
        "A09" => "patient departing (tracking)",
        "A10" => "patient arriving (tracking)",
        "A14" => "pending admit",
        "A17" => "swap patients",
        "A21" => "leave of absence out",
        "A22" => "leave of absence return",
        "A23" => "delete a visit",
        "A28" => "add person information",
        "A31" => "update person information",
        "A35" => "merge patient information (account number only)",
        "A36" => "merge patient information (patient id and account number)",
        "A38" => "cancel pre-admit",
        "A41" => "merge account",
        "A42" => "merge visit",
        "A44" => "move account information",
        "A47" => "change patient identifier list",
        _ => return None,
    })
}

/// The MSH fields an ACK needs, as the message wrote them (still escaped, in its separators),
/// except `message_type` and `event`, which are decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub separators: Separators,
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-9.1 (`ADT`, `ORU` …): what to route the message by.
    pub message_type: String,
    /// MSH-9.2, else EVN-1.
    pub event: String,
    /// MSH-10, as written: echoed in MSA-2.
    pub control_id: String,
    /// MSH-11.
    pub processing_id: String,
    /// MSH-12.1.
    pub version: String,
}

/// One ADT message, mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct AdtMessage {
    /// MSH-10.
    pub control_id: String,
    pub trigger: Trigger,
    /// EVN-2, else MSH-7: the sender's version of the Patient and the Encounter.
    pub version: DateTime<Utc>,
    /// A FHIR Patient.
    pub patient: Value,
    /// A FHIR Encounter (its subject the Patient by identifier); `None` when the message carries
    /// no stay (an A04 or A08 without PV1-19, an A08 without an inpatient's ward).
    pub encounter: Option<Value>,
    /// An A13: the finished stay goes back to in-progress (`EncounterUpdate::cancel_discharge`).
    pub cancel_discharge: bool,
    /// An A40 or A34: who is merged into whom. `patient` is then the survivor (PID) and
    /// `encounter` is `None`.
    pub merge: Option<Merge>,
    /// What the ACK needs.
    pub sender: Header,
}

/// What an A40 or A34 says: the patient known by `merged` is the patient known by `survivor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// PID-3, mapped (as the Patient's identifiers), the identity first.
    pub survivor: Vec<Identifier>,
    /// MRG-1, mapped through the same table (A34: its first repetition only); never one of
    /// `survivor`.
    pub merged: Vec<Identifier>,
}

/// MSA-1 in original acknowledgment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Accepted.
    AA,
    /// Read, but its content cannot be used: fix and resend.
    AE,
    /// Not taken at all: unreadable, or a message type, event or version not supported here.
    AR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }
}

/// Why a payload (or one message of it) was not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// In words, naming segments and fields; never patient data.
    pub reason: String,
    /// AE or AR.
    pub code: AckCode,
    /// HL7 table 0357 (`101` required field missing, `201` unsupported event …).
    pub condition: &'static str,
    /// The refused message's header; `None` when MSH could not be read.
    pub header: Option<Box<Header>>,
}

impl Refusal {
    /// The ACK answering the refused message (MSA-2 its MSH-10 when it could be read).
    pub fn ack(&self, ack_control_id: &str, now: DateTime<Utc>) -> String {
        ack(
            self.header.as_deref(),
            self.code,
            Some((self.condition, &self.reason)),
            ack_control_id,
            now,
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// HL7 table 0357 conditions used here.
pub mod condition {
    pub const SEGMENT_SEQUENCE: &str = "100";
    pub const REQUIRED_FIELD: &str = "101";
    pub const DATA_TYPE: &str = "102";
    pub const TABLE_VALUE: &str = "103";
    pub const MESSAGE_TYPE: &str = "200";
    pub const EVENT: &str = "201";
    pub const VERSION: &str = "203";
    pub const UNKNOWN_KEY: &str = "204";
    pub const DUPLICATE_KEY: &str = "205";
    /// Taken, but cannot be stored now: send it again.
    pub const RECORD_LOCKED: &str = "206";
    /// Read, but refused by the admission rules (the text says which).
    pub const APPLICATION: &str = "207";

    /// The table's text for a code (ERR-3.2).
    pub fn text(code: &str) -> &'static str {
        match code {
            "0" => "Message accepted",
            SEGMENT_SEQUENCE => "Segment sequence error",
            REQUIRED_FIELD => "Required field missing",
            DATA_TYPE => "Data type error",
            TABLE_VALUE => "Table value not found",
            MESSAGE_TYPE => "Unsupported message type",
            EVENT => "Unsupported event code",
            "202" => "Unsupported processing id",
            VERSION => "Unsupported version id",
            UNKNOWN_KEY => "Unknown key identifier",
            DUPLICATE_KEY => "Duplicate key identifier",
            "206" => "Application record locked",
            _ => "Application internal error",
        }
    }
}

/// A refusal before the header is attached.
struct Fault {
    code: AckCode,
    condition: &'static str,
    reason: String,
}

impl Fault {
    /// The message was read but cannot be used (AE).
    fn error(condition: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code: AckCode::AE,
            condition,
            reason: reason.into(),
        }
    }

    /// The message cannot be taken at all (AR).
    fn reject(condition: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code: AckCode::AR,
            condition,
            reason: reason.into(),
        }
    }

    fn with(self, header: Option<Header>) -> Refusal {
        Refusal {
            reason: self.reason,
            code: self.code,
            condition: self.condition,
            header: header.map(Box::new),
        }
    }
}

/// Whether a value from the message looks like a code of at most `max` characters, so that a
/// refusal may quote it. Free text, and digits that could be a number or a date, may be patient
/// data (a field sent in the wrong place), and are never quoted.
fn is_code(code: &str, max: usize) -> bool {
    !code.is_empty()
        && code.len() <= max
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '^'))
        && !(code.len() > 4 && code.chars().all(|c| c.is_ascii_digit()))
}

/// ` `code`` when the value looks like a code (see [`is_code`]), else nothing.
fn quoted(code: &str, max: usize) -> String {
    if is_code(code, max) {
        format!(" `{code}`")
    } else {
        String::new()
    }
}

/// Every message in an ER7 payload, mapped; a [`Refusal`] with the reason (and the refused
/// message's header, for its ACK) when any message of it cannot be used: a batch is refused
/// whole, and replayed whole once fixed.
pub fn read(payload: &[u8], settings: &Settings<'_>) -> Result<Vec<AdtMessage>, Refusal> {
    let text = er7::decode(payload).map_err(|e| Fault::reject(condition::DATA_TYPE, e).with(header(payload)))?;
    let messages =
        er7::split_messages(&text).map_err(|e| Fault::reject(condition::SEGMENT_SEQUENCE, e).with(header(payload)))?;
    let many = messages.len() > 1;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            message(m, settings).map_err(|mut r| {
                if many {
                    r.reason = format!("message {} of the batch: {}", i + 1, r.reason);
                }
                r
            })
        })
        .collect()
}

/// The header of a payload's first message, read as far as it can be (for routing, and for the
/// ACK of a payload that cannot be read further); `None` when there is no readable MSH.
pub fn header(payload: &[u8]) -> Option<Header> {
    // MSH is ASCII up to MSH-18 in every character set: a payload whose text cannot be decoded
    // is read as Latin-1, where every byte is a character.
    let text = er7::decode(payload).unwrap_or_else(|_| payload.iter().map(|&b| char::from(b)).collect());
    let first = er7::split_messages(&text).ok()?.into_iter().next()?;
    let parsed = er7::parse(&first).ok()?;
    let msh = parsed.segment("MSH")?;
    Some(read_header(msh, &parsed))
}

fn read_header(msh: &Segment<'_>, parsed: &Message<'_>) -> Header {
    let seps = parsed.separators;
    let raw = |n: usize| {
        msh.field(n)
            .and_then(|f| f.repeat(1))
            .map(|r| r.raw_value().trim().to_owned())
            .unwrap_or_default()
    };
    let event = component(msh, &seps, 9, 2)
        .or_else(|| parsed.segment("EVN").and_then(|evn| component(evn, &seps, 1, 1)))
        .unwrap_or_default();
    Header {
        separators: seps,
        sending_application: raw(3),
        sending_facility: raw(4),
        receiving_application: raw(5),
        receiving_facility: raw(6),
        message_type: component(msh, &seps, 9, 1).unwrap_or_default(),
        event,
        control_id: msh
            .field(10)
            .and_then(|f| f.repeat(1))
            .and_then(|r| r.component(1))
            .map(|c| c.raw_value().trim().to_owned())
            .unwrap_or_default(),
        processing_id: raw(11),
        version: component(msh, &seps, 12, 1).unwrap_or_default(),
    }
}

fn message(text: &str, settings: &Settings<'_>) -> Result<AdtMessage, Refusal> {
    let parsed = er7::parse(text).map_err(|e| Fault::reject(condition::DATA_TYPE, e).with(None))?;
    let Some(msh) = parsed.segment("MSH") else {
        return Err(Fault::reject(condition::SEGMENT_SEQUENCE, "no MSH segment").with(None));
    };
    let header = read_header(msh, &parsed);
    map(&parsed, msh, &header, settings).map_err(|f| f.with(Some(header)))
}

fn map(parsed: &Message<'_>, msh: &Segment<'_>, header: &Header, settings: &Settings<'_>) -> Result<AdtMessage, Fault> {
    let seps = parsed.separators;
    if header.message_type != "ADT" {
        return Err(Fault::reject(
            condition::MESSAGE_TYPE,
            format!(
                "wrong message type{} (MSH-9): the ADT feed takes ADT messages ({TAKES})",
                quoted(&format!("{}^{}", header.message_type, header.event), 8)
            ),
        ));
    }
    let trigger = Trigger::from_code(&header.event).ok_or_else(|| {
        let event = &header.event;
        let reason = match (event.is_empty(), unsupported_meaning(event)) {
            (true, _) => "MSH-9.2 (trigger event) and EVN-1 are empty: which ADT event is this?".to_owned(),
            (false, Some(meaning)) => {
                format!("ADT^{event} ({meaning}) is not supported: Wardwatch takes {TAKES}")
            }
            (false, None) => format!(
                "the ADT event{} (MSH-9.2) is not supported: Wardwatch takes {TAKES}",
                quoted(event, 3)
            ),
        };
        Fault::reject(condition::EVENT, reason)
    })?;
    if !header.version.starts_with("2.") {
        return Err(Fault::reject(
            condition::VERSION,
            format!(
                "MSH-12 (version){} is not an HL7 v2 version (2.3 to 2.8 are read)",
                quoted(&header.version, 8)
            ),
        ));
    }
    let control_id = component(msh, &seps, 10, 1)
        .ok_or_else(|| Fault::error(condition::REQUIRED_FIELD, "MSH-10 (message control id) is empty"))?;
    let zone = settings.zone;
    let evn = parsed.segment("EVN");
    let recorded = time(evn, &seps, "EVN", 2, zone)?;
    let occurred = time(evn, &seps, "EVN", 6, zone)?;
    let version = match recorded {
        Some(t) => t,
        None => time(Some(msh), &seps, "MSH", 7, zone)?.ok_or_else(|| {
            Fault::error(
                condition::REQUIRED_FIELD,
                "EVN-2 (recorded date/time) and MSH-7 (message date/time) are both empty: the message has no time to order it by",
            )
        })?,
    };
    let pid = parsed.segment("PID").ok_or_else(|| {
        Fault::error(
            condition::SEGMENT_SEQUENCE,
            format!("no PID segment: an {trigger} needs the patient"),
        )
    })?;
    let (patient, identity, identifiers) = patient(pid, &seps, settings.identity, version)?;
    if trigger.is_merge() {
        let merged = merged_identifiers(parsed, &seps, settings.identity, trigger, &identifiers)?;
        let mut survivor = vec![identity.clone()];
        survivor.extend(identifiers.into_iter().filter(|i| *i != identity));
        return Ok(AdtMessage {
            control_id,
            trigger,
            version,
            patient,
            encounter: None,
            cancel_discharge: false,
            merge: Some(Merge { survivor, merged }),
            sender: header.clone(),
        });
    }
    let stay = Stay {
        trigger,
        version,
        occurred,
        identity: &identity,
    };
    let encounter = encounter(parsed.segment("PV1"), &seps, settings, &stay)?;
    Ok(AdtMessage {
        control_id,
        trigger,
        version,
        patient,
        encounter,
        cancel_discharge: trigger == Trigger::A13,
        merge: None,
        sender: header.clone(),
    })
}

/// A DTM field as an instant; the error names the field and never quotes the value.
fn time(
    seg: Option<&Segment<'_>>,
    seps: &Separators,
    name: &str,
    field: usize,
    zone: Tz,
) -> Result<Option<DateTime<Utc>>, Fault> {
    seg.and_then(|s| component(s, seps, field, 1))
        .map(|t| er7::instant(&t, zone).map_err(|e| Fault::error(condition::DATA_TYPE, format!("{name}-{field}: {e}"))))
        .transpose()
}

fn instant_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A component's subcomponent of one repetition, unescaped; `None` when empty or `""`.
fn part(rep: &Repeat<'_>, seps: &Separators, comp: usize, sub: usize) -> Option<String> {
    let raw = rep.component(comp)?.subcomponent(sub)?.raw_value();
    let text = er7::unescape(raw, seps);
    let text = text.trim();
    (!text.is_empty() && text != "\"\"").then(|| text.to_owned())
}

/// An HD (assigning authority): its namespace id, else its universal id (an OID).
fn authority(rep: &Repeat<'_>, seps: &Separators, comp: usize) -> Option<String> {
    part(rep, seps, comp, 1).or_else(|| part(rep, seps, comp, 2))
}

fn usable_value(value: &str) -> bool {
    value.chars().count() <= MAX_IDENTIFIER && !value.chars().any(char::is_control)
}

fn repeats<'s>(seg: &'s Segment<'_>, field: usize) -> impl Iterator<Item = &'s Repeat<'s>> {
    seg.field(field).into_iter().flat_map(|f| f.repeats())
}

/// One CX repetition of an identifier list (PID-3, MRG-1): its value, assigning authority
/// (CX-4) and type (CX-5), and the identifier the identity table maps it to. `None` for an empty
/// repetition; refused when the value cannot be an identifier.
struct Cx {
    mapped: Option<Identifier>,
    assigner: Option<String>,
    type_code: Option<String>,
}

fn cx(rep: &Repeat<'_>, seps: &Separators, rules: &IdentityRules, field: &str) -> Result<Option<Cx>, Fault> {
    let Some(value) = part(rep, seps, 1, 1) else {
        return Ok(None);
    };
    if !usable_value(&value) {
        return Err(Fault::error(
            condition::DATA_TYPE,
            format!("{field}: an identifier is longer than {MAX_IDENTIFIER} characters or holds control characters"),
        ));
    }
    let assigner = authority(rep, seps, 4);
    let type_code = part(rep, seps, 5, 1);
    let mapped = rules.from_v2(&value, assigner.as_deref(), type_code.as_deref());
    Ok(Some(Cx {
        mapped,
        assigner,
        type_code,
    }))
}

/// The refusal of an identifier list none of whose repetitions maps: names the first one's
/// authority and type (never its value), and what to configure.
fn unmapped_fault(field: &str, assigner: &str, type_code: &str, also: &str) -> Fault {
    Fault::error(
        condition::UNKNOWN_KEY,
        format!(
            "{field}: no identifier has an assigning authority (CX-4) with a FHIR identifier system; the first is{} typed{}: \
             add it to V2_IDENTIFIER_SYSTEMS (AUTHORITY[^TYPE]=system){also}, then resend",
            if assigner.is_empty() {
                " without an authority".to_owned()
            } else {
                quoted(assigner, 32)
            },
            if type_code.is_empty() {
                " with no type".to_owned()
            } else {
                quoted(type_code, 4)
            },
        ),
    )
}

/// The Patient, the identifier it is known by, and every identifier it has (mapped).
fn patient(
    pid: &Segment<'_>,
    seps: &Separators,
    rules: &IdentityRules,
    version: DateTime<Utc>,
) -> Result<(Value, Identifier, Vec<Identifier>), Fault> {
    let mut identifiers: Vec<Value> = Vec::new();
    let mut raw: Vec<RawIdentifier> = Vec::new();
    // Authorities (and types) that have no system: named if nothing maps.
    let mut unmapped: Vec<(String, String)> = Vec::new();
    for rep in repeats(pid, 3) {
        let Some(Cx {
            mapped,
            assigner,
            type_code,
        }) = cx(rep, seps, rules, "PID-3")?
        else {
            continue;
        };
        let Some(id) = mapped else {
            unmapped.push((assigner.unwrap_or_default(), type_code.unwrap_or_default()));
            continue;
        };
        if raw
            .iter()
            .any(|r| r.system.as_deref() == Some(&id.system) && r.value.as_deref() == Some(&id.value))
        {
            continue;
        }
        let mut entry = Map::new();
        if let Some(t) = &type_code {
            entry.insert("type".into(), json!({"coding": [{"system": V2_0203, "code": t}]}));
        }
        entry.insert("system".into(), json!(id.system));
        entry.insert("value".into(), json!(id.value));
        if let Some(a) = &assigner {
            entry.insert("assigner".into(), json!({"display": a}));
        }
        raw.push(RawIdentifier {
            system: Some(id.system),
            value: Some(id.value),
            typed_mr: type_code.as_deref() == Some("MR"),
        });
        identifiers.push(Value::Object(entry));
    }
    if raw.is_empty() {
        let Some((assigner, type_code)) = unmapped.iter().find(|(_, t)| t == "MR").or_else(|| unmapped.first()) else {
            return Err(Fault::error(
                condition::REQUIRED_FIELD,
                "PID-3 (patient identifier list) is empty: a patient is known by an identifier",
            ));
        };
        return Err(unmapped_fault(
            "PID-3",
            assigner,
            type_code,
            ", or set MRN_SYSTEMS for identifiers typed MR without an authority",
        ));
    }
    let identity = rules
        .primary(&raw)
        .map_err(|issue| Fault::error(condition::UNKNOWN_KEY, format!("PID-3: {}", issue.message)))?;
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    p.insert("meta".into(), json!({"lastUpdated": instant_text(version)}));
    p.insert("identifier".into(), Value::Array(identifiers));
    let names: Vec<Value> = repeats(pid, 5).filter_map(|r| human_name(r, seps)).collect();
    if !names.is_empty() {
        p.insert("name".into(), Value::Array(names));
    }
    if let Some(gender) = component(pid, seps, 8, 1) {
        let gender = match gender.to_ascii_uppercase().as_str() {
            "M" => "male",
            "F" => "female",
            "O" | "A" => "other",
            _ => "unknown",
        };
        p.insert("gender".into(), json!(gender));
    }
    if let Some(born) = component(pid, seps, 7, 1) {
        p.insert("birthDate".into(), json!(birth_date(&born)?));
    }
    Ok((Value::Object(p), identity, rules.all(&raw)))
}

/// MRG-1 of a merge: the merged patient's identifiers, each repetition's assigning authority
/// (and type) mapped as PID-3's are (A34: the first repetition only, the patient id). One
/// PID/MRG pair per message; MRG-1 naming an identifier PID-3 names is refused.
fn merged_identifiers(
    parsed: &Message<'_>,
    seps: &Separators,
    rules: &IdentityRules,
    trigger: Trigger,
    survivor: &[Identifier],
) -> Result<Vec<Identifier>, Fault> {
    let what = trigger.meaning();
    let mrg = parsed.segment("MRG").ok_or_else(|| {
        Fault::error(
            condition::SEGMENT_SEQUENCE,
            format!("no MRG segment: an {trigger} ({what}) needs the merged patient's identifiers (MRG-1)"),
        )
    })?;
    if parsed.segment_count("MRG") > 1 || parsed.segment_count("PID") > 1 {
        return Err(Fault::error(
            condition::SEGMENT_SEQUENCE,
            format!("more than one PID/MRG pair: send one merge per {trigger} message"),
        ));
    }
    let mut merged: Vec<Identifier> = Vec::new();
    let mut unmapped: Vec<(String, String)> = Vec::new();
    let take = if trigger == Trigger::A34 { 1 } else { usize::MAX };
    for rep in repeats(mrg, 1).take(take) {
        let Some(Cx {
            mapped,
            assigner,
            type_code,
        }) = cx(rep, seps, rules, "MRG-1")?
        else {
            continue;
        };
        match mapped {
            Some(id) if survivor.contains(&id) => {
                return Err(Fault::error(
                    condition::DUPLICATE_KEY,
                    "MRG-1 names an identifier PID-3 also names: a patient cannot be merged into itself",
                ));
            }
            Some(id) if !merged.contains(&id) => merged.push(id),
            Some(_) => {}
            None => unmapped.push((assigner.unwrap_or_default(), type_code.unwrap_or_default())),
        }
    }
    if merged.is_empty() {
        let Some((assigner, type_code)) = unmapped.first() else {
            return Err(Fault::error(
                condition::REQUIRED_FIELD,
                format!(
                    "MRG-1 (prior patient identifier list) is empty: an {trigger} ({what}) names the merged patient there"
                ),
            ));
        };
        return Err(unmapped_fault("MRG-1", assigner, type_code, ""));
    }
    Ok(merged)
}

/// An XPN: family (FN-1), given names (2, 3), suffix (4), prefix (5), type (7).
fn human_name(rep: &Repeat<'_>, seps: &Separators) -> Option<Value> {
    let family = part(rep, seps, 1, 1);
    let given: Vec<String> = [2, 3].into_iter().filter_map(|c| part(rep, seps, c, 1)).collect();
    if family.is_none() && given.is_empty() {
        return None;
    }
    let mut name = Map::new();
    let name_use = match part(rep, seps, 7, 1).as_deref() {
        Some("L") => Some("official"),
        Some("D") => Some("usual"),
        Some("M") => Some("maiden"),
        Some("N") => Some("nickname"),
        _ => None,
    };
    if let Some(u) = name_use {
        name.insert("use".into(), json!(u));
    }
    if let Some(f) = family {
        name.insert("family".into(), json!(f));
    }
    if !given.is_empty() {
        name.insert("given".into(), json!(given));
    }
    if let Some(p) = part(rep, seps, 5, 1) {
        name.insert("prefix".into(), json!([p]));
    }
    if let Some(s) = part(rep, seps, 4, 1) {
        name.insert("suffix".into(), json!([s]));
    }
    Some(Value::Object(name))
}

/// PID-7's date part as a FHIR date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`); a time is dropped.
fn birth_date(text: &str) -> Result<String, Fault> {
    let bad = || {
        Fault::error(
            condition::DATA_TYPE,
            "PID-7 (date of birth) is not an HL7 v2 date (YYYY[MM[DD]])",
        )
    };
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let rest = &text[digits.len()..];
    let date = match digits.len() {
        4 | 6 if rest.is_empty() || rest.starts_with('^') => digits,
        n if n >= 8 => digits.chars().take(8).collect(),
        _ => return Err(bad()),
    };
    let number = |r: std::ops::Range<usize>| date.get(r).and_then(|d| d.parse::<u32>().ok());
    let year = number(0..4).ok_or_else(bad)?;
    let year = i32::try_from(year).map_err(|_| bad())?;
    match date.len() {
        4 => Ok(format!("{year:04}")),
        6 => {
            let month = number(4..6).filter(|m| (1..=12).contains(m)).ok_or_else(bad)?;
            Ok(format!("{year:04}-{month:02}"))
        }
        _ => {
            let (month, day) = (number(4..6).ok_or_else(bad)?, number(6..8).ok_or_else(bad)?);
            let d = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)?;
            Ok(d.format("%Y-%m-%d").to_string())
        }
    }
}

/// What the Encounter needs from the rest of the message.
struct Stay<'a> {
    trigger: Trigger,
    version: DateTime<Utc>,
    /// EVN-6, when the event happened.
    occurred: Option<DateTime<Utc>>,
    identity: &'a Identifier,
}

/// PV1-2 (table 0004) as `Encounter.class`: system, code, display.
fn class(code: Option<&str>) -> Result<(&'static str, &'static str, &'static str), Fault> {
    Ok(match code {
        Some("I" | "B") => (ACT_CODE, "IMP", "inpatient encounter"),
        Some("E") => (ACT_CODE, "EMER", "emergency"),
        Some("O" | "R") => (ACT_CODE, "AMB", "ambulatory"),
        Some("P") => (ACT_CODE, "PRENC", "pre-admission"),
        Some("C" | "N" | "U") => (NULL_FLAVOR, "UNK", "unknown"),
        Some(other) => {
            return Err(Fault::error(
                condition::TABLE_VALUE,
                format!(
                    "PV1-2 (patient class){} is not in HL7 table 0004 (E I O P R B C N U)",
                    quoted(other, 2)
                ),
            ));
        }
        None => {
            return Err(Fault::error(
                condition::REQUIRED_FIELD,
                "PV1-2 (patient class) is empty: an encounter needs a class (I for an inpatient)",
            ));
        }
    })
}

/// The visit number's system: see the module header.
fn visit_system(pv1: &Segment<'_>, seps: &Separators, settings: &Settings<'_>, identity: &Identifier) -> String {
    if let Some(system) = settings.visit_system {
        return system.to_owned();
    }
    let own = pv1
        .field(19)
        .and_then(|f| f.repeat(1))
        .and_then(|r| authority(r, seps, 4))
        .and_then(|a| {
            settings
                .identity
                .v2
                .iter()
                .find(|m| m.authority == a && m.type_code.as_deref() == Some("VN"))
        });
    match own {
        Some(row) => row.system.clone(),
        None => format!("{}/visit", identity.system.trim_end_matches('/')),
    }
}

/// A PL component (1 point of care, 2 room, 3 bed): its first subcomponent, since from v2.7
/// they are HDs (`WARD12&<oid>&ISO`).
fn place(pv1: &Segment<'_>, seps: &Separators, field: usize, comp: usize) -> Option<String> {
    part(pv1.field(field)?.repeat(1)?, seps, comp, 1)
}

/// PV1-3 or PV1-6 (PL): point of care, room, bed as location entries.
fn places(pv1: &Segment<'_>, seps: &Separators, field: usize, completed: bool) -> Vec<Value> {
    [(1, "wa", "Ward"), (2, "ro", "Room"), (3, "bd", "Bed")]
        .into_iter()
        .filter_map(|(c, code, display)| {
            let name = place(pv1, seps, field, c)?;
            let mut entry = json!({
                "location": {"display": name},
                "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": code, "display": display}]},
            });
            if completed {
                entry["status"] = json!("completed");
            }
            Some(entry)
        })
        .collect()
}

fn encounter(
    pv1: Option<&Segment<'_>>,
    seps: &Separators,
    settings: &Settings<'_>,
    stay: &Stay<'_>,
) -> Result<Option<Value>, Fault> {
    let trigger = stay.trigger;
    let required = trigger.needs_encounter();
    let Some(pv1) = pv1 else {
        return if required {
            Err(Fault::error(
                condition::SEGMENT_SEQUENCE,
                format!("no PV1 segment: an {trigger} ({}) needs the visit", trigger.meaning()),
            ))
        } else {
            Ok(None)
        };
    };
    let Some(visit) = component(pv1, seps, 19, 1) else {
        return if required {
            Err(Fault::error(
                condition::REQUIRED_FIELD,
                format!(
                    "PV1-19 (visit number) is empty: an {trigger} ({}) changes a stay, and a stay is known by its visit number",
                    trigger.meaning()
                ),
            ))
        } else {
            Ok(None)
        };
    };
    if !usable_value(&visit) {
        return Err(Fault::error(
            condition::DATA_TYPE,
            format!("PV1-19 (visit number) is longer than {MAX_IDENTIFIER} characters or holds control characters"),
        ));
    }
    let (class_system, class_code, class_display) = class(component(pv1, seps, 2, 1).as_deref())?;
    let zone = settings.zone;
    let admitted = time(Some(pv1), seps, "PV1", 44, zone)?;
    let discharged = time(Some(pv1), seps, "PV1", 45, zone)?;
    let status = match trigger {
        Trigger::A01 | Trigger::A02 | Trigger::A12 | Trigger::A13 => "in-progress",
        Trigger::A03 => "finished",
        Trigger::A04 => "arrived",
        Trigger::A08 if discharged.is_some() => "finished",
        Trigger::A08 => "in-progress",
        Trigger::A11 => "cancelled",
        // A merge carries no stay (`map` reads it without one).
        Trigger::A34 | Trigger::A40 => return Ok(None),
    };
    let ward = place(pv1, seps, 3, 1);
    if class_code == "IMP" && status == "in-progress" && ward.is_none() {
        if trigger == Trigger::A08 {
            // An update that does not say where the patient is: the Patient alone.
            return Ok(None);
        }
        return Err(Fault::error(
            condition::REQUIRED_FIELD,
            format!(
                "PV1-3: no point of care (PV1-3.1, the ward): an inpatient {trigger} ({}) needs a ward",
                trigger.meaning()
            ),
        ));
    }
    let event_time = stay.occurred.unwrap_or(stay.version);
    let start = admitted.or_else(|| matches!(trigger, Trigger::A01 | Trigger::A04).then_some(event_time));
    let end = (status == "finished").then(|| discharged.unwrap_or(event_time));
    let mut location = places(pv1, seps, 3, false);
    if trigger == Trigger::A02 {
        location.extend(places(pv1, seps, 6, true));
    }
    let mut e = Map::new();
    e.insert("resourceType".into(), json!("Encounter"));
    e.insert("meta".into(), json!({"lastUpdated": instant_text(stay.version)}));
    e.insert(
        "identifier".into(),
        json!([{
            "type": {"coding": [{"system": V2_0203, "code": "VN"}]},
            "system": visit_system(pv1, seps, settings, stay.identity),
            "value": visit,
        }]),
    );
    e.insert("status".into(), json!(status));
    e.insert(
        "class".into(),
        json!({"system": class_system, "code": class_code, "display": class_display}),
    );
    e.insert(
        "subject".into(),
        json!({"type": "Patient", "identifier": {"system": stay.identity.system, "value": stay.identity.value}}),
    );
    let mut period = Map::new();
    if let Some(s) = start {
        period.insert("start".into(), json!(instant_text(s)));
    }
    if let Some(t) = end {
        period.insert("end".into(), json!(instant_text(t)));
    }
    if !period.is_empty() {
        e.insert("period".into(), Value::Object(period));
    }
    if !location.is_empty() {
        e.insert("location".into(), Value::Array(location));
    }
    let resource = Value::Object(e);
    // What admit reads must read: a ward or bed name too long for the board is refused here,
    // with the field named.
    crate::facts::encounter(&resource)
        .map_err(|issue| Fault::error(condition::DATA_TYPE, format!("PV1-3: {}", issue.message)))?;
    Ok(Some(resource))
}

/// Text for an ACK field: separators escaped, and anything but printable ASCII as `\Xhh…\`
/// (its UTF-8 bytes), so the ACK is ASCII whatever character set the sender reads it in.
fn escape(text: &str, seps: &Separators) -> String {
    ascii(&seps.encode(text).to_string(), seps)
}

/// ERR-8 (user message) is at most 250 characters (v2.5); MSA-3 (text message), where versions
/// before 2.5 read the error, at most 80 (v2.3).
const ERR_8_MAX: usize = 250;
const MSA_3_MAX: usize = 80;

/// [`escape`], cut so that what is written is at most `max` characters: whole escape sequences
/// only, and `...` at the end when cut.
fn escape_within(text: &str, seps: &Separators, max: usize) -> String {
    let whole = escape(text, seps);
    if whole.len() <= max {
        return whole;
    }
    const CUT: &str = "...";
    let mut out = String::with_capacity(max);
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let piece = escape(c.encode_utf8(&mut buf), seps);
        if out.len() + piece.len() + CUT.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out.push_str(CUT);
    out
}

/// A field as the message wrote it (already escaped), made ASCII.
fn ascii(raw: &str, seps: &Separators) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            out.push(seps.escape);
            out.push('X');
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "{b:02X}");
            }
            out.push(seps.escape);
        }
    }
    out
}

/// Whether a version is before 2.5, where ERR-3…ERR-12 do not exist yet (the error goes in
/// ERR-1 and MSA-3).
fn before_2_5(version: &str) -> bool {
    let minor: String = version
        .strip_prefix("2.")
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    minor.parse::<u32>().is_ok_and(|m| m < 5)
}

/// An ER7 ACK (segments ended by CR; MLLP framing is the transport's) answering a message:
/// MSH with sender and receiver swapped (MSH-3 `WARDWATCH` when the message named no
/// receiving application), MSH-7 `now`, MSH-9 `ACK^<event>^ACK`, MSH-10 `ack_control_id`, the
/// message's MSH-11 and MSH-12; MSA-1 `code`, MSA-2 the message's MSH-10; with an `error`
/// (table 0357 code, text), ERR-3 `<code>^<table text>^HL70357`, ERR-4 `E` (`W` beside AA),
/// ERR-8 the text — and, for versions before 2.5, ERR-1 and MSA-3 as those versions read it.
/// `header` `None` (MSH could not be read): default separators, version 2.5.1, MSA-2 empty.
/// Every field is escaped in the message's separators and the ACK is ASCII.
pub fn ack(
    header: Option<&Header>,
    code: AckCode,
    error: Option<(&str, &str)>,
    ack_control_id: &str,
    now: DateTime<Utc>,
) -> String {
    let unread = Header::default();
    let h = header.unwrap_or(&unread);
    let seps = h.separators;
    let (f, c) = (seps.field, seps.component);
    let or = |raw: &str, default: &str| {
        if raw.is_empty() {
            default.to_owned()
        } else {
            ascii(raw, &seps)
        }
    };
    let version = or(&h.version, DEFAULT_VERSION);
    let old = before_2_5(&version);
    let message_type = if h.event.is_empty() {
        "ACK".to_owned()
    } else {
        format!("ACK{c}{}{c}ACK", escape(&h.event, &seps))
    };
    let msh = [
        format!("MSH{seps}"),
        or(&h.receiving_application, OUR_APPLICATION),
        ascii(&h.receiving_facility, &seps),
        ascii(&h.sending_application, &seps),
        ascii(&h.sending_facility, &seps),
        now.format("%Y%m%d%H%M%S+0000").to_string(),
        String::new(),
        message_type,
        escape(ack_control_id, &seps),
        or(&h.processing_id, "P"),
        version,
    ];
    let mut msa = vec!["MSA".to_owned(), code.as_str().to_owned(), ascii(&h.control_id, &seps)];
    let mut out = msh.join(&f.to_string());
    out.push('\r');
    let err = error.map(|(code_0357, text)| {
        let s = seps.subcomponent;
        let table = condition::text(code_0357);
        let code_0357 = escape(code_0357, &seps);
        if old {
            msa.push(escape_within(text, &seps, MSA_3_MAX));
        }
        let text = escape_within(text, &seps, ERR_8_MAX);
        let eld = if old {
            format!("{c}{c}{c}{code_0357}{s}{table}{s}HL70357")
        } else {
            String::new()
        };
        let severity = if code == AckCode::AA { "W" } else { "E" };
        [
            "ERR".to_owned(),
            eld,
            String::new(),
            format!("{code_0357}{c}{table}{c}HL70357"),
            severity.to_owned(),
            String::new(),
            String::new(),
            String::new(),
            text,
        ]
        .join(&f.to_string())
    });
    out.push_str(&msa.join(&f.to_string()));
    out.push('\r');
    if let Some(err) = err {
        out.push_str(&err);
        out.push('\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::admission::{self, AdmissionInput, EncounterUpdate};
    use crate::events::EventType;
    use crate::facts;
    use crate::record::EncounterState;

    const MRN: &str = "https://northgate.nhs.uk/Id/mrn";
    const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
    /// What a refusal must never say: the test patient's name, birth date and identifiers.
    const PATIENT_DATA: [&str; 6] = ["HARGREAVES", "Mabel", "June", "19410318", "123456", "9434765919"];

    fn rules() -> IdentityRules {
        IdentityRules {
            systems: vec![MRN.into()],
            v2: IdentityRules::parse_v2_table(&format!("RXH^MR={MRN},NHS={NHS}")).expect("table"),
        }
    }

    fn settings(rules: &IdentityRules) -> Settings<'_> {
        Settings {
            identity: rules,
            zone: chrono_tz::Europe::London,
            visit_system: None,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    /// A PV1 with the fields given (1-based) set and the rest empty.
    fn pv1(fields: &[(usize, &str)]) -> String {
        let mut f = vec![""; 46];
        f[0] = "PV1";
        f[1] = "1";
        f[7] = "C4410022^DRUMMOND^Fiona^^^Dr";
        f[10] = "MED";
        for (n, v) in fields {
            f[*n] = v;
        }
        f.join("|").trim_end_matches('|').to_owned()
    }

    /// An inpatient's PV1 on WARD12, bay 2, bed B04, visit V26001234, admitted at 10:00.
    fn inpatient(more: &[(usize, &str)]) -> String {
        let mut fields = vec![
            (2, "I"),
            (3, "WARD12^BAY2^B04^NGH"),
            (19, "V26001234^^^RXH^VN"),
            (44, "20261127100000"),
        ];
        fields.extend_from_slice(more);
        pv1(&fields)
    }

    const PID: &str = "PID|1||123456^^^RXH^MR~9434765919^^^NHS^NH||HARGREAVES^Mabel^June^^Mrs^^L||19410318|F|||\
                       14 Ashcombe Road^^Northgate^^NG7 2QQ^GBR||01632 960418";

    /// An ADT message (CR-separated) with EVN-2 `recorded` and the segments after PID.
    fn adt(event: &str, recorded: &str, rest: &[&str]) -> String {
        let mut segments = vec![
            format!(
                "MSH|^~\\&|PAS|NGH|WARDWATCH|NGH|20261127101502||ADT^{event}^ADT_A01|ADT-{event}-1|P|2.5.1|||AL|NE|GBR"
            ),
            format!("EVN|{event}|{recorded}|||C4410022^DRUMMOND^Fiona"),
            PID.to_owned(),
        ];
        segments.extend(rest.iter().map(|s| (*s).to_owned()));
        segments.join("\r") + "\r"
    }

    fn read_one(text: &str) -> AdtMessage {
        let rules = rules();
        let mut m = read(text.as_bytes(), &settings(&rules)).expect("read");
        assert_eq!(m.len(), 1);
        m.remove(0)
    }

    fn refused(text: &str) -> Refusal {
        let rules = rules();
        let r = read(text.as_bytes(), &settings(&rules)).expect_err("refused");
        for data in PATIENT_DATA {
            assert!(!r.reason.contains(data), "`{}` gives away patient data", r.reason);
        }
        r
    }

    /// The Encounter as admit reads it.
    fn stay(m: &AdtMessage) -> facts::EncounterFacts {
        facts::encounter(m.encounter.as_ref().expect("an encounter")).expect("admit reads it")
    }

    #[test]
    fn an_a01_admits_an_inpatient_to_a_ward_and_bed_under_the_hospital_number() {
        let m = read_one(&adt("A01", "20261127101500", &[&inpatient(&[])]));
        assert_eq!((m.trigger, m.control_id.as_str()), (Trigger::A01, "ADT-A01-1"));
        assert_eq!(m.version, at("2026-11-27T10:15:00Z"));
        assert!(!m.cancel_discharge);
        let p = &m.patient;
        assert_eq!(
            p["identifier"],
            json!([
                {"type": {"coding": [{"system": V2_0203, "code": "MR"}]}, "system": MRN, "value": "123456",
                 "assigner": {"display": "RXH"}},
                {"type": {"coding": [{"system": V2_0203, "code": "NH"}]}, "system": NHS, "value": "9434765919",
                 "assigner": {"display": "NHS"}}
            ])
        );
        assert_eq!(
            p["name"],
            json!([{"use": "official", "family": "HARGREAVES", "given": ["Mabel", "June"], "prefix": ["Mrs"]}])
        );
        assert_eq!(
            (p["birthDate"].as_str(), p["gender"].as_str()),
            (Some("1941-03-18"), Some("female"))
        );
        assert_eq!(p["meta"]["lastUpdated"], "2026-11-27T10:15:00Z");
        let pf = facts::patient(p);
        assert_eq!(pf.name.as_deref(), Some("Mabel June HARGREAVES"));
        assert_eq!(pf.last_updated, Some(m.version));
        let id = rules().primary(&pf.identifiers).expect("identity");
        assert_eq!((id.system.as_str(), id.value.as_str()), (MRN, "123456"));

        let e = m.encounter.as_ref().expect("encounter");
        assert_eq!(e["identifier"][0]["system"], format!("{MRN}/visit"));
        assert_eq!(e["identifier"][0]["value"], "V26001234");
        assert_eq!(e["subject"]["identifier"], json!({"system": MRN, "value": "123456"}));
        assert_eq!(e["class"]["system"], ACT_CODE);
        assert_eq!(e["location"][1]["physicalType"]["coding"][0]["code"], "ro");
        let f = stay(&m);
        assert!(f.is_current_inpatient());
        assert_eq!((f.status.as_str(), f.class.as_deref()), ("in-progress", Some("IMP")));
        assert_eq!((f.ward.as_deref(), f.bed.as_deref()), (Some("WARD12"), Some("B04")));
        assert_eq!(f.start, Some(at("2026-11-27T10:00:00Z")));
        assert_eq!(f.end, None);
        assert_eq!(f.last_updated, Some(m.version));
        assert_eq!(
            f.subject,
            facts::SubjectRef::Identifier(RawIdentifier {
                system: Some(MRN.into()),
                value: Some("123456".into()),
                typed_mr: false,
            })
        );
    }

    #[test]
    fn an_a02_moves_the_same_stay_to_another_bed_and_keeps_where_it_came_from() {
        let a01 = read_one(&adt("A01", "20261127101500", &[&inpatient(&[])]));
        let a02 = read_one(&adt(
            "A02",
            "20261127143000",
            &[&inpatient(&[(3, "WARD7^BAY1^B02^NGH"), (6, "WARD12^BAY2^B04^NGH")])],
        ));
        let (before, after) = (stay(&a01), stay(&a02));
        assert_eq!(before.identifier, after.identifier, "one stay, one Encounter");
        assert_eq!(
            (after.ward.as_deref(), after.bed.as_deref()),
            (Some("WARD7"), Some("B02"))
        );
        assert!(after.is_current_inpatient());
        assert!(after.last_updated > before.last_updated);
        let e = a02.encounter.as_ref().expect("encounter");
        let moved_from: Vec<&str> = e["location"]
            .as_array()
            .expect("locations")
            .iter()
            .filter(|l| l["status"] == "completed")
            .filter_map(|l| l["location"]["display"].as_str())
            .collect();
        assert_eq!(moved_from, ["WARD12", "BAY2", "B04"]);
    }

    #[test]
    fn an_a02_then_an_a03_of_the_same_stay_are_newer_versions_of_one_encounter() {
        let a02 = read_one(&adt("A02", "20261127143000", &[&inpatient(&[(3, "WARD7^^B02")])]));
        let a03 = read_one(&adt(
            "A03",
            "20261129110500",
            &[&inpatient(&[(3, "WARD7^^B02"), (45, "20261129110000")])],
        ));
        let (moved, left) = (stay(&a02), stay(&a03));
        assert_eq!(moved.identifier, left.identifier);
        assert_eq!(moved.identifier, Some(format!("{MRN}/visit|V26001234")));
        assert_eq!(left.status, "finished");
        assert_eq!(left.end, Some(at("2026-11-29T11:00:00Z")));
        assert!(!left.is_current_inpatient());
        assert!(left.last_updated > moved.last_updated);
    }

    #[test]
    fn a_discharge_without_pv1_45_ends_when_the_event_happened() {
        let evn6 = adt("A03", "20261129110500", &[&inpatient(&[])]).replace(
            "EVN|A03|20261129110500|||C4410022^DRUMMOND^Fiona",
            "EVN|A03|20261129110500|||C4410022^DRUMMOND^Fiona|20261129104500",
        );
        assert_eq!(stay(&read_one(&evn6)).end, Some(at("2026-11-29T10:45:00Z")));
        let plain = adt("A03", "20261129110500", &[&inpatient(&[])]);
        assert_eq!(stay(&read_one(&plain)).end, Some(at("2026-11-29T11:05:00Z")));
    }

    #[test]
    fn an_a04_registers_an_arrival_that_is_not_an_admission() {
        let ed = pv1(&[(2, "E"), (3, "ED^^CUB3"), (19, "E26000077^^^RXH^VN")]);
        let m = read_one(&adt("A04", "20261127020000", &[&ed]));
        let f = stay(&m);
        assert_eq!((f.status.as_str(), f.class.as_deref()), ("arrived", Some("EMER")));
        assert!(!f.is_current_inpatient());
        assert_eq!(f.start, Some(at("2026-11-27T02:00:00Z")), "the registration time");
        let no_visit = pv1(&[(2, "O"), (3, "OPD1")]);
        let m = read_one(&adt("A04", "20261127020000", &[&no_visit]));
        assert!(
            m.encounter.is_none(),
            "a registration without a visit number is the patient alone"
        );
        facts::patient(&m.patient);
    }

    #[test]
    fn an_a08_updates_the_stay_and_never_takes_a_patient_off_the_ward() {
        let m = read_one(&adt("A08", "20261128090000", &[&inpatient(&[])]));
        assert_eq!(stay(&m).status, "in-progress");
        assert_eq!(stay(&m).ward.as_deref(), Some("WARD12"));
        let after_discharge = read_one(&adt("A08", "20261130090000", &[&inpatient(&[(45, "20261129110000")])]));
        assert_eq!(
            stay(&after_discharge).status,
            "finished",
            "a correction after discharge stays finished"
        );
        let no_ward = read_one(&adt("A08", "20261128090000", &[&inpatient(&[(3, "")])]));
        assert!(no_ward.encounter.is_none());
        let no_pv1 = read_one(&adt("A08", "20261128090000", &[]));
        assert!(no_pv1.encounter.is_none());
        assert_eq!(no_pv1.patient["identifier"][0]["value"], "123456");
    }

    #[test]
    fn an_a11_cancels_the_admission() {
        let m = read_one(&adt("A11", "20261127103000", &[&inpatient(&[])]));
        let f = stay(&m);
        assert_eq!(f.status, "cancelled");
        assert!(!f.is_current_inpatient());
        assert_eq!(f.end, None);
    }

    #[test]
    fn an_a12_puts_the_patient_back_where_they_were_before_the_transfer() {
        let m = read_one(&adt("A12", "20261127150000", &[&inpatient(&[])]));
        let f = stay(&m);
        assert_eq!(
            (f.status.as_str(), f.ward.as_deref(), f.bed.as_deref()),
            ("in-progress", Some("WARD12"), Some("B04"))
        );
        assert!(!m.cancel_discharge);
    }

    #[test]
    fn an_a13_reopens_the_discharge_and_says_so() {
        let m = read_one(&adt("A13", "20261129120000", &[&inpatient(&[])]));
        assert!(m.cancel_discharge);
        let f = stay(&m);
        assert_eq!((f.status.as_str(), f.end), ("in-progress", None));
        assert!(f.is_current_inpatient());
    }

    /// The stay as admit hands it to the decision.
    fn update(m: &AdtMessage) -> EncounterUpdate {
        let f = stay(m);
        let d = crate::decide::digest(&m.encounter.as_ref().expect("encounter").to_string());
        EncounterUpdate {
            state: EncounterState {
                id: f.identifier.clone().expect("identifier"),
                status: f.status,
                class: f.class,
                ward: f.ward,
                bed: f.bed,
                start: f.start,
                end: f.end,
                source_version: f.last_updated,
                resource_key: d.clone(),
                digest: d,
                version: None,
                deleted: false,
            },
            cancel_discharge: m.cancel_discharge,
        }
    }

    #[test]
    fn admit_transfer_discharge_and_cancel_discharge_move_the_patient_through_the_decision() {
        let messages = [
            adt("A01", "20261127101500", &[&inpatient(&[])]),
            adt("A02", "20261127143000", &[&inpatient(&[(3, "WARD7^^B02")])]),
            adt(
                "A03",
                "20261129110500",
                &[&inpatient(&[(3, "WARD7^^B02"), (45, "20261129110000")])],
            ),
            adt("A13", "20261129120000", &[&inpatient(&[(3, "WARD7^^B02")])]),
        ];
        let mut record = None;
        let mut seen = Vec::new();
        for text in &messages {
            let m = read_one(text);
            let input = AdmissionInput {
                patient: None,
                encounters: vec![update(&m)],
                deletes: Vec::new(),
            };
            let d = admission::decide(record.take(), "p1", input, m.version);
            seen.push((d.events().map(|e| e.kind).collect::<Vec<_>>(), d.record.ward()));
            record = Some(d.record);
        }
        assert_eq!(
            seen,
            vec![
                (vec![EventType::Admitted], Some("WARD12".into())),
                (vec![EventType::Transferred], Some("WARD7".into())),
                (vec![EventType::Discharged], None),
                (vec![EventType::Admitted], Some("WARD7".into())),
            ]
        );
        assert_eq!(record.expect("record").encounters.len(), 1, "one stay throughout");
    }

    #[test]
    fn lf_crlf_mllp_and_batches_are_read_alike() {
        let cr = adt("A01", "20261127101500", &[&inpatient(&[])]);
        let want = read_one(&cr);
        let lf = cr.replace('\r', "\n");
        let crlf = cr.replace('\r', "\r\n");
        let mllp = format!("\x0b{cr}\x1c\r");
        for text in [lf, crlf, mllp] {
            assert_eq!(read_one(&text), want);
        }
        let a02 = adt("A02", "20261127143000", &[&inpatient(&[(3, "WARD7^^B02")])]);
        let batch = format!("BHS|^~\\&|PAS|NGH\r{cr}{a02}BTS|2\r");
        let rules = rules();
        let both = read(batch.as_bytes(), &settings(&rules)).expect("batch");
        assert_eq!(
            both.iter().map(|m| m.trigger).collect::<Vec<_>>(),
            [Trigger::A01, Trigger::A02]
        );
        let broken = format!("BHS|^~\\&|PAS|NGH\r{cr}{}BTS|2\r", a02.replace("ADT^A02", "ADT^A17"));
        let r = read(broken.as_bytes(), &settings(&rules)).expect_err("a batch is refused whole");
        assert!(r.reason.starts_with("message 2 of the batch: ADT^A17"), "{}", r.reason);
        assert_eq!(r.header.map(|h| h.control_id), Some("ADT-A02-1".into()));
    }

    #[test]
    fn escape_sequences_and_latin_1_names_and_places_are_decoded() {
        let text = adt("A01", "20261127101500", &[&inpatient(&[(3, "WARD\\T\\12^^B\\F\\4")])])
            .replace("HARGREAVES^Mabel^June", "O\\X27\\NEILL^Ren\u{e9}e^Anne\\S\\Marie")
            .replace("|GBR\r", "|GBR|8859/1\r");
        // Latin-1 bytes: é is one byte, as MSH-18 declares.
        let bytes: Vec<u8> = text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect();
        assert!(bytes.contains(&0xe9));
        let rules = rules();
        let m = read(&bytes, &settings(&rules)).expect("read").remove(0);
        assert_eq!(m.patient["name"][0]["family"], "O'NEILL");
        assert_eq!(m.patient["name"][0]["given"], json!(["Renée", "Anne^Marie"]));
        let f = stay(&m);
        assert_eq!((f.ward.as_deref(), f.bed.as_deref()), (Some("WARD&12"), Some("B|4")));
        // From v2.7 a point of care is an HD: its namespace is the ward.
        let hd = adt(
            "A01",
            "20261127101500",
            &[&inpatient(&[(3, "WARD12&1.2.826.0.1.99&ISO^^B04")])],
        );
        assert_eq!(stay(&read_one(&hd)).ward.as_deref(), Some("WARD12"));
        // The same Latin-1 bytes without the declaration are refused by MSH-18, never misread.
        let undeclared: Vec<u8> = text
            .replace("|8859/1\r", "\r")
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect();
        let r = read(&undeclared, &settings(&rules)).expect_err("not UTF-8");
        assert_eq!((r.code, r.condition), (AckCode::AR, "102"));
        assert!(r.reason.contains("MSH-18"), "{}", r.reason);
        assert_eq!(
            r.header.map(|h| h.control_id),
            Some("ADT-A01-1".into()),
            "the ACK can still answer it"
        );
    }

    #[test]
    fn identifiers_under_authorities_without_a_system_are_dropped_and_none_at_all_is_refused() {
        let mixed = adt("A01", "20261127101500", &[&inpatient(&[])])
            .replace("9434765919^^^NHS^NH", "9434765919^^^NHS^NH~77123^^^OLDPAS^PI");
        let m = read_one(&mixed);
        assert_eq!(m.patient["identifier"].as_array().map(Vec::len), Some(2));
        let unknown = adt("A01", "20261127101500", &[&inpatient(&[])]).replace(
            "123456^^^RXH^MR~9434765919^^^NHS^NH",
            "123456^^^STJAMES^MR~77123^^^OLDPAS^PI",
        );
        let r = refused(&unknown);
        assert_eq!((r.code, r.condition), (AckCode::AE, "204"));
        assert!(
            r.reason.contains("`STJAMES`") && r.reason.contains("V2_IDENTIFIER_SYSTEMS"),
            "{}",
            r.reason
        );
        // An authority given as an OID (HD-2) is read too.
        let rules = IdentityRules {
            systems: vec![],
            v2: IdentityRules::parse_v2_table(&format!("2.16.840.1.113883.2.1.4.1={NHS}")).expect("table"),
        };
        let oid = adt("A01", "20261127101500", &[&inpatient(&[])]).replace(
            "123456^^^RXH^MR~9434765919^^^NHS^NH",
            "9434765919^^^&2.16.840.1.113883.2.1.4.1&ISO^NH",
        );
        let m = read(oid.as_bytes(), &settings(&rules)).expect("read").remove(0);
        assert_eq!(stay(&m).identifier, Some(format!("{NHS}/visit|V26001234")));
    }

    #[test]
    fn a_message_without_pid_3_is_refused() {
        let r = refused(
            &adt("A01", "20261127101500", &[&inpatient(&[])]).replace("123456^^^RXH^MR~9434765919^^^NHS^NH", ""),
        );
        assert_eq!((r.code, r.condition), (AckCode::AE, "101"));
        assert!(
            r.reason.starts_with("PID-3 (patient identifier list) is empty"),
            "{}",
            r.reason
        );
        let no_pid = adt("A01", "20261127101500", &[&inpatient(&[])]).replace(&format!("{PID}\r"), "");
        assert!(refused(&no_pid).reason.starts_with("no PID segment"));
    }

    #[test]
    fn unsupported_events_message_types_and_versions_are_refused_by_name() {
        let base = adt("A01", "20261127101500", &[&inpatient(&[])]);
        for (event, says) in [
            ("A17", "swap patients"),
            ("A35", "merge patient information (account number only)"),
            ("A28", "add person"),
        ] {
            let r = refused(
                &base
                    .replace("ADT^A01", &format!("ADT^{event}"))
                    .replace("EVN|A01", &format!("EVN|{event}")),
            );
            assert_eq!((r.code, r.condition), (AckCode::AR, "201"));
            assert!(r.reason.starts_with(&format!("ADT^{event} ({says}")), "{}", r.reason);
        }
        let r = refused(&base.replace("ADT^A01", "ADT^Z99"));
        assert!(r.reason.contains("`Z99`"), "{}", r.reason);
        let r = refused(&base.replace("ADT^A01^ADT_A01", "ORU^R01^ORU_R01"));
        assert_eq!((r.code, r.condition), (AckCode::AR, "200"));
        assert!(r.reason.contains("`ORU^R01`"), "{}", r.reason);
        let r = refused(&base.replace("|P|2.5.1|", "|P|3.0|"));
        assert_eq!((r.code, r.condition), (AckCode::AR, "203"));
        // No event in MSH-9: EVN-1 says which.
        assert_eq!(read_one(&base.replace("ADT^A01^ADT_A01", "ADT")).trigger, Trigger::A01);
    }

    const OLD_MRN: &str = "777777";

    #[test]
    fn an_a40_names_the_survivor_by_pid_3_and_the_merged_patient_by_every_mapped_mrg_1() {
        let mrg = format!("MRG|{OLD_MRN}^^^RXH^MR~9999999999^^^NHS^NH~55^^^OTHER^PI~{OLD_MRN}^^^RXH^MR");
        let m = read_one(&adt("A40", "20261127160000", &[&mrg, &inpatient(&[])]));
        assert_eq!(m.trigger, Trigger::A40);
        assert!(m.trigger.is_merge());
        assert_eq!(m.encounter, None, "a merge is no stay, whatever PV1 says");
        assert!(!m.cancel_discharge);
        let merge = m.merge.expect("a merge");
        let id = |system: &str, value: &str| Identifier {
            system: system.into(),
            value: value.into(),
        };
        assert_eq!(merge.survivor, [id(MRN, "123456"), id(NHS, "9434765919")]);
        assert_eq!(
            merge.merged,
            [id(MRN, OLD_MRN), id(NHS, "9999999999")],
            "an authority with no system is dropped, a repeat counted once"
        );
        assert_eq!(
            m.patient["identifier"][0]["value"], "123456",
            "the Patient is the survivor"
        );
    }

    #[test]
    fn an_a34_merges_by_the_patient_id_alone() {
        let mrg = format!("MRG|{OLD_MRN}^^^RXH^MR~9999999999^^^NHS^NH");
        let text = adt("A34", "20261127160000", &[&mrg]).replace("|P|2.5.1|", "|P|2.3|");
        let m = read_one(&text);
        assert_eq!(m.trigger, Trigger::A34);
        let merge = m.merge.expect("a merge");
        assert_eq!(merge.merged.len(), 1, "MRG-1's first repetition only");
        assert_eq!(merge.merged[0].value, OLD_MRN);
        assert!(
            read_one(&adt("A01", "20261127101500", &[&inpatient(&[])]))
                .merge
                .is_none()
        );
    }

    #[test]
    fn a_merge_without_a_usable_mrg_1_is_refused_with_the_field_and_no_patient_data() {
        let cases = [
            (adt("A40", "20261127160000", &[]), "100", "no MRG segment"),
            (
                adt("A40", "20261127160000", &["MRG|"]),
                "101",
                "MRG-1 (prior patient identifier list) is empty",
            ),
            (
                adt("A40", "20261127160000", &[&format!("MRG|{OLD_MRN}^^^ELSEWHERE^MR")]),
                "204",
                "MRG-1: no identifier has an assigning authority",
            ),
            (
                adt("A40", "20261127160000", &["MRG|123456^^^RXH^MR"]),
                "205",
                "MRG-1 names an identifier PID-3 also names",
            ),
            (
                adt(
                    "A40",
                    "20261127160000",
                    &[
                        &format!("MRG|{OLD_MRN}^^^RXH^MR"),
                        PID,
                        &format!("MRG|{OLD_MRN}1^^^RXH^MR"),
                    ],
                ),
                "100",
                "more than one PID/MRG pair",
            ),
        ];
        for (text, condition, says) in cases {
            let r = refused(&text);
            assert_eq!((r.code, r.condition), (AckCode::AE, condition), "{}", r.reason);
            assert!(r.reason.starts_with(says), "{}", r.reason);
            assert!(!r.reason.contains(OLD_MRN), "{}", r.reason);
        }
    }

    #[test]
    fn a_stay_without_a_visit_number_or_a_ward_is_refused_with_the_field() {
        let base = adt("A01", "20261127101500", &[&inpatient(&[])]);
        let r = refused(&base.replace("V26001234^^^RXH^VN", ""));
        assert_eq!((r.code, r.condition), (AckCode::AE, "101"));
        assert!(r.reason.starts_with("PV1-19 (visit number) is empty"), "{}", r.reason);
        let r = refused(&adt("A02", "20261127101500", &[]));
        assert!(r.reason.starts_with("no PV1 segment"), "{}", r.reason);
        let r = refused(&base.replace("WARD12^BAY2^B04^NGH", "^^B04"));
        assert!(r.reason.starts_with("PV1-3: no point of care"), "{}", r.reason);
        // A discharge or a cancel need not say where.
        let a03 = adt("A03", "20261129110500", &[&inpatient(&[(3, "")])]);
        assert_eq!(stay(&read_one(&a03)).ward, None);
        let long = "W".repeat(200);
        let r = refused(&base.replace("WARD12^", &format!("{long}^")));
        assert!(
            r.reason.starts_with("PV1-3: a ward or bed name is longer"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn bad_fields_are_refused_by_name_without_their_values() {
        let base = adt("A01", "20261127101500", &[&inpatient(&[])]);
        let cases = [
            (base.replace("|19410318|", "|1941-03-18|"), "PID-7"),
            (base.replace("|19410318|", "|19410231|"), "PID-7"),
            (base.replace("|20261127100000", "|2026112710x"), "PV1-44"),
            (base.replace("EVN|A01|20261127101500", "EVN|A01|27/11/2026"), "EVN-2"),
            (base.replace("PV1|1|I|", "PV1|1|Q|"), "PV1-2"),
            (base.replace("PV1|1|I|", "PV1|1||"), "PV1-2"),
            (base.replace("|ADT-A01-1|", "||"), "MSH-10"),
            (
                base.replace("EVN|A01|20261127101500", "EVN|A01|")
                    .replace("|20261127101502|", "||"),
                "EVN-2 (recorded date/time) and MSH-7",
            ),
        ];
        for (text, says) in cases {
            let r = refused(&text);
            assert!(r.reason.starts_with(says), "{} should start with {says}", r.reason);
            assert_eq!(r.code, AckCode::AE);
        }
    }

    #[test]
    fn classes_genders_and_partial_birth_dates_map_to_fhir() {
        for (code, class) in [
            ("I", "IMP"),
            ("B", "IMP"),
            ("E", "EMER"),
            ("O", "AMB"),
            ("R", "AMB"),
            ("P", "PRENC"),
            ("U", "UNK"),
        ] {
            let m = read_one(&adt(
                "A04",
                "20261127101500",
                &[&pv1(&[(2, code), (3, "W1"), (19, "V1")])],
            ));
            assert_eq!(stay(&m).class.as_deref(), Some(class), "{code}");
        }
        for (code, gender) in [
            ("M", "male"),
            ("F", "female"),
            ("O", "other"),
            ("A", "other"),
            ("U", "unknown"),
            ("9", "unknown"),
        ] {
            let m = read_one(&adt("A08", "20261127101500", &[]).replace("|19410318|F|", &format!("|19410318|{code}|")));
            assert_eq!(m.patient["gender"], gender, "{code}");
        }
        for (written, date) in [
            ("1941", "1941"),
            ("194103", "1941-03"),
            ("194103180930", "1941-03-18"),
            ("19410318+0100", "1941-03-18"),
        ] {
            let m = read_one(&adt("A08", "20261127101500", &[]).replace("|19410318|", &format!("|{written}|")));
            assert_eq!(m.patient["birthDate"], date, "{written}");
        }
    }

    #[test]
    fn the_visit_number_system_is_the_configured_one_then_its_authority_then_the_patients() {
        let text = adt("A01", "20261127101500", &[&inpatient(&[])]);
        let rules = rules();
        let configured = Settings {
            visit_system: Some("https://northgate.nhs.uk/Id/spell"),
            ..settings(&rules)
        };
        let m = read(text.as_bytes(), &configured).expect("read").remove(0);
        assert_eq!(
            stay(&m).identifier,
            Some("https://northgate.nhs.uk/Id/spell|V26001234".into())
        );
        let mut with_vn = rules.clone();
        with_vn
            .v2
            .extend(IdentityRules::parse_v2_table("RXH^VN=https://northgate.nhs.uk/Id/visit").expect("table"));
        let m = read(text.as_bytes(), &settings(&with_vn)).expect("read").remove(0);
        assert_eq!(
            stay(&m).identifier,
            Some("https://northgate.nhs.uk/Id/visit|V26001234".into())
        );
        assert_eq!(
            stay(&read_one(&text)).identifier,
            Some(format!("{MRN}/visit|V26001234"))
        );
    }

    fn now() -> DateTime<Utc> {
        at("2026-11-27T10:16:00Z")
    }

    #[test]
    fn the_ack_to_an_accepted_message_swaps_sender_and_receiver_field_by_field() {
        let m = read_one(&adt("A01", "20261127101500", &[&inpatient(&[])]));
        let text = ack(Some(&m.sender), AckCode::AA, None, "WW-1", now());
        assert_eq!(
            text,
            "MSH|^~\\&|WARDWATCH|NGH|PAS|NGH|20261127101600+0000||ACK^A01^ACK|WW-1|P|2.5.1\rMSA|AA|ADT-A01-1\r"
        );
        let parsed = er7::parse(text.trim_end_matches('\r')).expect("an ACK parses");
        let seps = parsed.separators;
        let msh = parsed.segment("MSH").expect("MSH");
        let field = |n: usize| component(msh, &seps, n, 1);
        assert_eq!(field(3).as_deref(), Some("WARDWATCH"), "MSH-3 is MSH-5");
        assert_eq!(field(4).as_deref(), Some("NGH"), "MSH-4 is MSH-6");
        assert_eq!(field(5).as_deref(), Some("PAS"), "MSH-5 is MSH-3");
        assert_eq!(field(6).as_deref(), Some("NGH"), "MSH-6 is MSH-4");
        assert_eq!(field(7).as_deref(), Some("20261127101600+0000"));
        assert_eq!(
            (
                component(msh, &seps, 9, 1),
                component(msh, &seps, 9, 2),
                component(msh, &seps, 9, 3)
            ),
            (Some("ACK".into()), Some("A01".into()), Some("ACK".into()))
        );
        assert_eq!(
            (field(10).as_deref(), field(11).as_deref(), field(12).as_deref()),
            (Some("WW-1"), Some("P"), Some("2.5.1"))
        );
        let msa = parsed.segment("MSA").expect("MSA");
        assert_eq!(component(msa, &seps, 1, 1).as_deref(), Some("AA"));
        assert_eq!(component(msa, &seps, 2, 1).as_deref(), Some("ADT-A01-1"));
        assert!(parsed.segment("ERR").is_none());
    }

    #[test]
    fn the_ack_to_a_refused_message_carries_the_condition_and_the_escaped_reason() {
        let r = refused(&adt("A17", "20261127101500", &[&inpatient(&[])]));
        let text = r.ack("WW-2", now());
        let parsed = er7::parse(text.trim_end_matches('\r')).expect("an ACK parses");
        let seps = parsed.separators;
        let msa = parsed.segment("MSA").expect("MSA");
        assert_eq!(component(msa, &seps, 1, 1).as_deref(), Some("AR"));
        assert_eq!(component(msa, &seps, 2, 1).as_deref(), Some("ADT-A17-1"));
        assert!(msa.field(3).is_none(), "MSA-3 is for versions before 2.5");
        let err = parsed.segment("ERR").expect("ERR");
        assert_eq!(
            (
                component(err, &seps, 3, 1),
                component(err, &seps, 3, 2),
                component(err, &seps, 3, 3)
            ),
            (
                Some("201".into()),
                Some("Unsupported event code".into()),
                Some("HL70357".into())
            )
        );
        assert_eq!(component(err, &seps, 4, 1).as_deref(), Some("E"));
        assert_eq!(
            err.field(8).map(|f| er7::unescape(f.raw_value(), &seps)),
            Some(r.reason.clone())
        );
        assert!(text.contains("ACK^A17^ACK"));
        // Separators in a reason are escaped, and anything but ASCII is written \Xhh\.
        let header = r.header.as_deref();
        let text = ack(header, AckCode::AE, Some(("207", "a|b^c é")), "WW-3", now());
        assert!(text.is_ascii());
        assert!(
            text.ends_with("ERR|||207^Application internal error^HL70357|E||||a\\F\\b\\S\\c \\XC3A9\\\r"),
            "{text}"
        );
    }

    #[test]
    fn an_ack_to_a_pre_2_5_message_puts_the_error_where_those_versions_read_it() {
        let r = refused(&adt("A01", "20261127101500", &[&inpatient(&[(19, "")])]).replace("|P|2.5.1|", "|P|2.3|"));
        let text = r.ack("WW-4", now());
        let lines: Vec<&str> = text.split('\r').collect();
        assert!(lines[0].ends_with("|ACK^A01^ACK|WW-4|P|2.3"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("MSA|AE|ADT-A01-1|PV1-19 (visit number) is empty"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with(
                "ERR|^^^101&Required field missing&HL70357||101^Required field missing^HL70357|E||||PV1-19"
            ),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn a_long_reason_is_cut_to_what_err_8_and_msa_3_may_hold_between_escape_sequences() {
        // 300 characters, a separator and a non-ASCII character near each cut.
        let reason = format!("{}|é{}", "x".repeat(75), "y".repeat(223));
        assert_eq!(reason.chars().count(), 300);
        let seps = Separators::default();
        let field = |text: &str, segment: &str, n: usize| {
            text.split('\r')
                .find(|l| l.starts_with(segment))
                .and_then(|l| l.split('|').nth(n))
                .unwrap_or_default()
                .to_owned()
        };
        let text = ack(None, AckCode::AE, Some(("207", &reason)), "WW-7", now());
        let err_8 = field(&text, "ERR", 8);
        assert!(err_8.len() <= 250 && err_8.len() >= 240, "{}: {err_8}", err_8.len());
        assert!(err_8.ends_with("..."), "{err_8}");
        assert!(
            err_8.starts_with(&format!("{}\\F\\\\XC3A9\\y", "x".repeat(75))),
            "{err_8}"
        );
        // What is cut is still well formed: it unescapes to the start of the reason.
        let kept = er7::unescape(err_8.trim_end_matches("..."), &seps).to_string();
        assert!(reason.starts_with(kept.as_str()), "{kept}");

        let old = Header {
            version: "2.3".into(),
            ..Header::default()
        };
        let text = ack(Some(&old), AckCode::AE, Some(("207", &reason)), "WW-8", now());
        let msa_3 = field(&text, "MSA", 3);
        assert!(msa_3.len() <= 80, "{}: {msa_3}", msa_3.len());
        assert_eq!(
            msa_3,
            format!("{}...", "x".repeat(75)),
            "an escape sequence is not split"
        );
        // A short reason is written whole.
        let text = ack(None, AckCode::AE, Some(("207", "short")), "WW-9", now());
        assert_eq!(field(&text, "ERR", 8), "short");
    }

    #[test]
    fn input_without_a_readable_msh_gets_an_ar_with_default_separators() {
        let r = refused("hello, is this the ward?");
        assert_eq!((r.code, r.header.as_deref()), (AckCode::AR, None));
        let text = r.ack("WW-5", now());
        assert!(
            text.starts_with("MSH|^~\\&|WARDWATCH||||20261127101600+0000||ACK|WW-5|P|2.5.1\rMSA|AR|\rERR|||"),
            "{text}"
        );
        let r = refused("MSH|^~");
        assert!(r.ack("WW-6", now()).contains("\rMSA|AR|\r"));
    }

    #[test]
    fn the_ack_uses_the_messages_own_separators() {
        let text = adt("A17", "20261127101500", &[]).replace('|', "#").replace('^', "*");
        let r = refused(&text);
        let a = r.ack("WW-7", now());
        assert!(a.starts_with("MSH#*~\\&#WARDWATCH#NGH#PAS#NGH#"), "{a}");
        assert!(a.contains("#ACK*A17*ACK#"), "{a}");
        assert!(a.contains("\rMSA#AR#ADT-A17-1\r"), "{a}");
        assert!(a.contains("#201*Unsupported event code*HL70357#E#"), "{a}");
    }

    /// `functions/admit/tests/corpus/adt`: `NN-<events>-….hl7` are read into those events (a batch
    /// names each), `refused-<0357 code>-….hl7` are refused with that condition.
    #[test]
    fn every_corpus_message_is_read_into_its_events_or_refused_with_its_condition() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions/admit/tests/corpus/adt");
        let rules = rules();
        let s = settings(&rules);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("corpus folder")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= 10, "the corpus is there");
        let mut visits = std::collections::BTreeSet::new();
        for path in files {
            let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
            let bytes = std::fs::read(&path).expect("file");
            let parts: Vec<&str> = name.trim_end_matches(".hl7").split('-').collect();
            if parts[0] == "refused" {
                let r = read(&bytes, &s).expect_err(&name);
                assert_eq!(r.condition, parts[1], "{name}: {}", r.reason);
                assert!(r.ack("C", now()).contains(&format!("{}^", parts[1])), "{name}");
                continue;
            }
            let messages = read(&bytes, &s).unwrap_or_else(|r| panic!("{name}: {r}"));
            let events: Vec<String> = messages.iter().map(|m| m.trigger.code().to_ascii_lowercase()).collect();
            let named: Vec<String> = parts[1..]
                .iter()
                .take_while(|p| p.len() == 3 && p.starts_with('a'))
                .map(|p| (*p).to_owned())
                .collect();
            assert_eq!(events, named, "{name}");
            for m in &messages {
                facts::patient(&m.patient);
                assert_eq!(m.merge.is_some(), m.trigger.is_merge(), "{name}");
                if let Some(e) = &m.encounter {
                    let f = facts::encounter(e).unwrap_or_else(|i| panic!("{name}: {}", i.message));
                    visits.insert(f.identifier.unwrap_or_default());
                }
            }
        }
        // One stay (V26001234) across A01 A02 A03 A08 A11 A12 A13, an ED visit, an HDU stay,
        // and the stay of the record merged by the A40.
        assert_eq!(visits.len(), 4, "{visits:?}");
    }

    #[test]
    fn thousands_of_mutated_messages_never_panic_and_whatever_is_read_is_what_admit_reads() {
        let bases = [
            adt("A01", "20261127101500", &[&inpatient(&[])]),
            adt("A02", "20261127143000", &[&inpatient(&[(6, "WARD12^BAY2^B04")])]),
            adt("A03", "20261129110500", &[&inpatient(&[(45, "20261129110000")])]),
            adt("A08", "20261127101500", &[]),
            adt("A40", "20261127160000", &["MRG|777777^^^RXH^MR~9999999999^^^NHS^NH"]),
        ];
        let alphabet: &[u8] = b"|^~\\&\r\nMSHPIDPVEN0123456789.+-XAIE\"\xe9\xc3\x0b\x1c ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let rules = rules();
        let s = settings(&rules);
        let (mut read_ok, mut refused_n) = (0, 0);
        for i in 0..6_000u64 {
            let mut bytes = bases[(i % 5) as usize].as_bytes().to_vec();
            for _ in 0..=(next() % 6) {
                let at = (next() as usize) % (bytes.len() + 1);
                let b = alphabet[(next() as usize) % alphabet.len()];
                match next() % 4 {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            match read(&bytes, &s) {
                Ok(messages) => {
                    read_ok += 1;
                    for m in messages {
                        facts::patient(&m.patient);
                        rules
                            .primary(&facts::patient(&m.patient).identifiers)
                            .expect("a read patient has an identity");
                        if let Some(e) = &m.encounter {
                            facts::encounter(e).expect("a read encounter is what admit reads");
                        }
                        if let Some(merge) = &m.merge {
                            assert!(!merge.survivor.is_empty() && !merge.merged.is_empty());
                            assert!(merge.merged.iter().all(|i| !merge.survivor.contains(i)));
                        }
                        assert!(ack(Some(&m.sender), AckCode::AA, None, "X", now()).is_ascii());
                    }
                }
                Err(r) => {
                    refused_n += 1;
                    let a = r.ack("X", now());
                    assert!(a.is_ascii() && a.starts_with("MSH"), "{a:?}");
                    for data in ["HARGREAVES", "Mabel", "19410318"] {
                        assert!(!r.reason.contains(data), "{}", r.reason);
                    }
                }
            }
        }
        assert!(
            read_ok > 100 && refused_n > 100,
            "both paths exercised: {read_ok} read, {refused_n} refused"
        );
    }
}
