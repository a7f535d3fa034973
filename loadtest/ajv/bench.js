// ajv 8 on the inputs `validaterate` (wardwatch-loadtest) checks, against the same official R4
// JSON Schema, string -> JSON.parse -> validate, on one thread. Prints per-second figures as JSON
// (the shape `validaterate` prints). Run by loadtest/validate-vs-ajv.sh; alone:
//   npm ci --prefix loadtest/ajv && node loadtest/ajv/bench.js [--seconds 3]
//
// The schema is the full schemas/fhir/fhir.schema.json, each type compiled as `{"$ref":
// "fhir#/definitions/<Type>"}`, with the edits wardwatch-fhir makes (ResourceList, which a
// Bundle entry's resource refers to, becomes any object; the root oneOf / discriminator / id
// are dropped): a transaction is checked as admit checks it — the Bundle, then each kept entry
// (Patient, Encounter) on its own. `transaction_unedited` is the same Bundle in one call against
// the schema as published, its entries through ResourceList's oneOf over every resource type.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const Ajv = require("ajv");
const draft06 = require("ajv/dist/refs/json-schema-draft-06.json");

const root = path.join(__dirname, "..", "..");
const read = (p) => fs.readFileSync(path.join(root, p), "utf8");
const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1]) || 3;
const KEPT = ["Patient", "Encounter"];

function ajvWith(schema) {
  // strict off: the FHIR schema has keywords ajv does not know (discriminator with mapping).
  const ajv = new Ajv({ strict: false });
  ajv.addMetaSchema(draft06);
  ajv.addSchema(schema, "fhir");
  return ajv;
}

const published = JSON.parse(read("schemas/fhir/fhir.schema.json"));
// ajv 8 refuses draft-04's `id` at the root ("use $id"); it names nothing the schema refers to.
delete published.id;
const edited = JSON.parse(read("schemas/fhir/fhir.schema.json"));
edited.definitions.ResourceList = { type: "object" };
delete edited.oneOf;
delete edited.discriminator;
delete edited.id;

let started = process.hrtime.bigint();
const ajv = ajvWith(edited);
const validators = {};
for (const t of ["Bundle", "Patient", "Encounter", "Observation"]) {
  validators[t] = ajv.compile({ $ref: `fhir#/definitions/${t}` });
}
const compileMs = Number(process.hrtime.bigint() - started) / 1e6;
started = process.hrtime.bigint();
const unedited = ajvWith(published).compile({ $ref: "fhir#/definitions/Bundle" });
const compileUneditedMs = Number(process.hrtime.bigint() - started) / 1e6;

function check(validate, value) {
  if (!validate(value)) {
    throw new Error(JSON.stringify(validate.errors.slice(0, 3)));
  }
}

function resource(text, expected) {
  const value = JSON.parse(text);
  if (value.resourceType !== expected) throw new Error(`a ${value.resourceType}`);
  check(validators[expected], value);
}

function transaction(text) {
  const bundle = JSON.parse(text);
  if (bundle.type !== "transaction" && bundle.type !== "batch") throw new Error(bundle.type);
  check(validators.Bundle, bundle);
  let checked = 0;
  for (const entry of bundle.entry || []) {
    const r = entry.resource;
    if (r && KEPT.includes(r.resourceType)) {
      check(validators[r.resourceType], r);
      checked += 1;
    }
  }
  return checked;
}

function transactionUnedited(text) {
  check(unedited, JSON.parse(text));
}

/** Calls per second of `f` over `seconds`, after a warm-up of a quarter of that. */
function rate(f) {
  const run = (ms) => {
    let n = 0;
    const end = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
    let now;
    const t0 = process.hrtime.bigint();
    do {
      for (let i = 0; i < 256; i++) f();
      n += 256;
      now = process.hrtime.bigint();
    } while (now < end);
    return n / (Number(now - t0) / 1e9);
  };
  run(seconds * 250);
  return Math.round(run(seconds * 1000));
}

const bundleText = read("schemas/examples/admission-bundle.json");
const bundle = JSON.parse(bundleText);
const entryText = (t) => JSON.stringify(bundle.entry.find((e) => e.resource.resourceType === t).resource);
const inputs = {
  patient: [entryText("Patient"), (s) => resource(s, "Patient")],
  encounter: [entryText("Encounter"), (s) => resource(s, "Encounter")],
  observation: [read("schemas/examples/potassium-critical.json"), (s) => resource(s, "Observation")],
  transaction: [bundleText, transaction],
  transaction_unedited: [bundleText, transactionUnedited],
};

const out = {
  validator: `ajv ${require("ajv/package.json").version}`,
  runtime: `node ${process.version}`,
  seconds,
  compile_ms: Math.round(compileMs * 10) / 10,
  compile_unedited_bundle_ms: Math.round(compileUneditedMs * 10) / 10,
  inputs: {},
};
for (const [name, [text, f]] of Object.entries(inputs)) {
  f(text); // valid, or this throws
  out.inputs[name] = {
    bytes: Buffer.byteLength(text),
    parse_per_s: rate(() => JSON.parse(text)),
    validate_per_s: rate(() => f(text)),
  };
}
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
