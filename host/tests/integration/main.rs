//! One integration-test binary for the host: the whole process on 127.0.0.1:0, embedded and
//! against the real Redis and RabbitMQ, plus the Dapr sidecar contract and the board in a real
//! browser.

mod board;
mod browser;
mod dapr;
mod embedded;
mod fhir_api;
mod helpers;
mod hl7v2;
mod interop;
mod lab;
mod manifests;
mod merge;
mod mllp;
mod records;
mod services;
