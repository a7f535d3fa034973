// Wardwatch's FHIR API as a FHIR client library nobody here wrote meets it: fhir-kit-client
// (npm, MIT, pinned by package-lock.json) against a running host. Started by
// host/tests/integration/interop.rs (`cargo test`), which spawns the host on 127.0.0.1:0:
//
//   node interop.mjs <base>          e.g. node interop.mjs http://127.0.0.1:8080/fhir
//
// Every step goes through the library's own API (capabilityStatement, create, read, search,
// create with If-None-Exist, transaction, update, vread, nextPage); only the ward board, which
// is not FHIR, is read with a plain fetch. Each step prints one line; the first mismatch exits
// non-zero saying what was expected and what came back (status and OperationOutcome included).
//
// Each run uses MRNs of its own; the ward is "Ward 5", and the counts there are relative, so
// the script also runs against a host that already has patients.

import { randomUUID } from "node:crypto";
import { CapabilityTool, Client } from "fhir-kit-client";

const base = process.argv[2];
if (!base) {
  console.error("usage: node interop.mjs <FHIR base URL, e.g. http://127.0.0.1:8080/fhir>");
  process.exit(2);
}

const MRN_SYSTEM = "https://fhir.example-hospital.nhs.uk/Id/mrn";
const LOCATION_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type";
const WARD = "Ward 5";
const run = randomUUID().slice(0, 8).toUpperCase();
const MRN = `INTEROP-${run}`;
const MRN2 = `INTEROP-${run}-2`;

const client = new Client({ baseUrl: base });
let step = "start";

class Mismatch extends Error {}

function fail(message) {
  throw new Mismatch(message);
}

function expect(what, expected, got) {
  const e = JSON.stringify(expected);
  const g = JSON.stringify(got);
  if (e !== g) fail(`${what}: expected ${e}, got ${g}`);
}

function check(what, ok, got) {
  if (!ok) fail(`${what}; got ${JSON.stringify(got)}`);
}

function ok(line) {
  console.log(`ok   ${step}: ${line}`);
}

/** The HTTP response behind a value the library returned. */
const response = (value) => Client.httpFor(value).response;

/** `W/"3"` → `3`. */
const versionOfEtag = (tag) => (tag ?? "").replace(/^W\//, "").replace(/"/g, "");

const patientBody = (mrn, given) => ({
  resourceType: "Patient",
  identifier: [{ system: MRN_SYSTEM, value: mrn }],
  name: [{ use: "official", family: "Interop", given: [given] }],
  gender: "female",
  birthDate: "1950-03-14",
});

const place = (display, code) => ({
  location: { display },
  status: "active",
  physicalType: { coding: [{ system: LOCATION_TYPE, code }] },
});

const encounterBody = (subject, bed) => ({
  resourceType: "Encounter",
  status: "in-progress",
  class: { system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "IMP", display: "inpatient encounter" },
  subject: { reference: subject },
  period: { start: new Date().toISOString().replace(/\.\d+Z$/, "Z") },
  location: [place(WARD, "wa"), place(bed, "bd")],
});

const ids = (bundle) => (bundle.entry ?? []).map((e) => e.resource?.id);

async function main() {
  // --- capabilities ---------------------------------------------------------------------
  step = "capabilities";
  const cs = await client.capabilityStatement();
  expect("resourceType", "CapabilityStatement", cs.resourceType);
  expect("fhirVersion", "4.0.1", cs.fhirVersion);
  const tool = new CapabilityTool(cs);
  for (const [rt, interaction] of [
    ["Patient", "create"],
    ["Patient", "read"],
    ["Patient", "vread"],
    ["Patient", "update"],
    ["Patient", "search-type"],
    ["Encounter", "create"],
    ["Encounter", "search-type"],
  ]) {
    check(`the CapabilityStatement declares ${rt} ${interaction}`, tool.resourceCan(rt, interaction), tool.interactionsFor({ resourceType: rt }));
  }
  check("the CapabilityStatement declares transaction", tool.serverCan("transaction"), cs.rest?.[0]?.interaction);
  check("Patient is searched by identifier", tool.resourceSearch("Patient", "identifier"), tool.searchParamsFor({ resourceType: "Patient" }));
  for (const p of ["status", "location"]) {
    check(`Encounter is searched by ${p}`, tool.resourceSearch("Encounter", p), tool.searchParamsFor({ resourceType: "Encounter" }));
  }
  expect("Patient conditionalCreate", true, tool.capabilityContents({ resourceType: "Patient", capabilityType: "conditionalCreate" }));
  ok(`FHIR ${cs.fhirVersion}, ${tool.serverCapabilities().resource.map((r) => r.type).join(", ")}; transaction declared`);

  // --- create ---------------------------------------------------------------------------
  step = "create";
  const created = await client.create({ resourceType: "Patient", body: patientBody(MRN, "Alex") });
  const createdHttp = response(created);
  expect("status of POST Patient", 201, createdHttp.status);
  expect("resourceType", "Patient", created.resourceType);
  check("the created Patient has an id", typeof created.id === "string" && created.id.length > 0, created.id);
  expect("meta.versionId", "1", created.meta?.versionId);
  check("meta.lastUpdated is set", typeof created.meta?.lastUpdated === "string", created.meta);
  const location = createdHttp.headers.get("location") ?? "";
  check(`Location names Patient/${created.id}/_history/1`, location.endsWith(`/Patient/${created.id}/_history/1`), location);
  expect("ETag", "1", versionOfEtag(createdHttp.headers.get("etag")));
  const pid = created.id;
  ok(`Patient/${pid} version 1, MRN ${MRN}`);

  // --- read -----------------------------------------------------------------------------
  step = "read";
  const read = await client.read({ resourceType: "Patient", id: pid });
  expect("read id", pid, read.id);
  expect("read identifier", [{ system: MRN_SYSTEM, value: MRN }], read.identifier);
  expect("read versionId", "1", read.meta?.versionId);
  expect("read ETag", "1", versionOfEtag(response(read).headers.get("etag")));
  ok(`Patient/${pid} read back, ${read.name?.[0]?.given?.[0]} ${read.name?.[0]?.family}`);

  // --- search ---------------------------------------------------------------------------
  step = "search";
  const byMrn = { identifier: `${MRN_SYSTEM}|${MRN}` };
  const found = await client.search({ resourceType: "Patient", searchParams: byMrn });
  expect("Bundle.type", "searchset", found.type);
  expect("total of Patient?identifier", 1, found.total);
  expect("ids found", [pid], ids(found));
  check("the searchset has a self link", found.link?.some((l) => l.relation === "self"), found.link);
  ok(`Patient?identifier=${MRN_SYSTEM}|${MRN}: total 1, Patient/${pid}`);

  // --- conditional create ---------------------------------------------------------------
  step = "conditional create";
  const again = await client.create({
    resourceType: "Patient",
    body: patientBody(MRN, "Alex"),
    options: { headers: { "If-None-Exist": `identifier=${MRN_SYSTEM}|${MRN}` } },
  });
  expect("status of a conditional create that matches", 200, response(again).status);
  expect("id of the matched Patient", pid, again.id);
  expect("its versionId (nothing written)", "1", again.meta?.versionId);
  const still = await client.search({ resourceType: "Patient", searchParams: byMrn });
  expect("total of Patient?identifier after the conditional create", 1, still.total);
  ok(`If-None-Exist matched Patient/${pid} (200), still one patient with MRN ${MRN}`);

  // --- transaction ----------------------------------------------------------------------
  step = "transaction";
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const encounterUrn = `urn:uuid:${randomUUID()}`;
  const tx = await client.transaction({
    body: {
      resourceType: "Bundle",
      type: "transaction",
      entry: [
        { fullUrl: patientUrn, resource: patientBody(MRN2, "Sam"), request: { method: "POST", url: "Patient" } },
        { fullUrl: encounterUrn, resource: encounterBody(patientUrn, "Bed 9"), request: { method: "POST", url: "Encounter" } },
      ],
    },
  });
  expect("status of POST [base] with a transaction", 200, response(tx).status);
  expect("Bundle.type", "transaction-response", tx.type);
  expect("number of response entries", 2, tx.entry?.length);
  const answered = tx.entry.map((e) => e.response ?? {});
  for (const [i, rt] of ["Patient", "Encounter"].entries()) {
    check(`entry ${i} answers 201 Created`, /^201\b/.test(answered[i].status ?? ""), answered[i]);
    check(`entry ${i} (request order) is a ${rt}`, new RegExp(`(^|/)${rt}/[^/]+/_history/1$`).test(answered[i].location ?? ""), answered[i]);
    expect(`entry ${i} etag`, "1", versionOfEtag(answered[i].etag));
  }
  const idOf = (loc) => loc.replace(/\/_history\/.*$/, "").split("/").pop();
  const pid2 = idOf(answered[0].location);
  const eid = idOf(answered[1].location);
  const stay = await client.read({ resourceType: "Encounter", id: eid });
  expect("the Encounter's subject (the urn:uuid resolved)", `Patient/${pid2}`, stay.subject?.reference);
  ok(`transaction-response: 201 Patient/${pid2}, 201 Encounter/${eid} (subject Patient/${pid2})`);

  // --- search encounters on the ward ----------------------------------------------------
  step = "search Encounter";
  const onWard = { status: "in-progress", location: WARD };
  const ward = await client.search({ resourceType: "Encounter", searchParams: onWard });
  expect("Bundle.type", "searchset", ward.type);
  check(`Encounter?status=in-progress&location=${WARD} finds Encounter/${eid}`, ids(ward).includes(eid), ids(ward));
  expect("total is the number of entries (one page)", ward.entry.length, ward.total);
  const wardTotal = ward.total;
  ok(`Encounter?status=in-progress&location=${WARD}: total ${wardTotal}, includes Encounter/${eid}`);

  // --- the board ------------------------------------------------------------------------
  step = "board";
  const boardUrl = new URL("../api/inpatients", `${base.replace(/\/+$/, "")}/`);
  let row;
  let board;
  for (let i = 0; i < 100 && !row; i++) {
    if (i) await new Promise((r) => setTimeout(r, 100));
    const r = await fetch(boardUrl);
    if (!r.ok) fail(`GET ${boardUrl}: expected 200, got ${r.status} ${await r.text()}`);
    board = await r.json();
    row = board.find((p) => p.mrn === MRN2);
  }
  check(`GET ${boardUrl} lists MRN ${MRN2} within 10 s`, row, board);
  expect("the board's ward and bed", [WARD, "Bed 9"], [row.ward, row.bed]);
  ok(`${MRN2} is on the board in ${row.ward}, ${row.bed}`);

  // --- update ---------------------------------------------------------------------------
  step = "update";
  const changed = { ...read, name: [{ use: "official", family: "Interop", given: ["Alexandra"] }] };
  const updated = await client.update({
    resourceType: "Patient",
    id: pid,
    body: changed,
    options: { headers: { "If-Match": response(read).headers.get("etag") } },
  });
  expect("status of PUT Patient/<id>", 200, response(updated).status);
  expect("updated id", pid, updated.id);
  expect("updated meta.versionId", "2", updated.meta?.versionId);
  expect("updated ETag", "2", versionOfEtag(response(updated).headers.get("etag")));
  const v2 = await client.vread({ resourceType: "Patient", id: pid, version: "2" });
  expect("vread version 2: given name", ["Alexandra"], v2.name?.[0]?.given);
  let stale;
  try {
    await client.update({
      resourceType: "Patient",
      id: pid,
      body: changed,
      options: { headers: { "If-Match": 'W/"1"' } },
    });
  } catch (e) {
    if (e instanceof Mismatch || !e.response) throw e;
    stale = e.response;
  }
  expect("status of a PUT with a stale If-Match", 412, stale?.status);
  ok(`Patient/${pid} version 2 (If-Match W/"1" → 200), vread 2 reads it; a stale If-Match answers 412`);

  // --- paging ---------------------------------------------------------------------------
  step = "paging";
  const other = await client.create({ resourceType: "Patient", body: patientBody(`${MRN2}-B`, "Jo") });
  const stay2 = await client.create({ resourceType: "Encounter", body: encounterBody(`Patient/${other.id}`, "Bed 10") });
  expect("status of POST Encounter", 201, response(stay2).status);
  let page = await client.search({ resourceType: "Encounter", searchParams: { ...onWard, _count: 1 } });
  const total = page.total;
  expect(`total of Encounter?status=in-progress&location=${WARD} after a second admission`, wardTotal + 1, total);
  const seen = [];
  for (let pages = 1; ; pages++) {
    expect(`entries on page ${pages} with _count=1`, 1, page.entry?.length);
    seen.push(...ids(page));
    const next = await client.nextPage({ bundle: page });
    if (!next) break;
    if (pages > total) fail(`nextPage kept going after ${pages} pages of ${total}`);
    page = next;
  }
  expect("pages followed by next", total, seen.length);
  expect("distinct encounters across the pages", total, new Set(seen).size);
  check(`the pages include Encounter/${eid} and Encounter/${stay2.id}`, seen.includes(eid) && seen.includes(stay2.id), seen);
  const back = await client.prevPage({ bundle: page });
  check("the last page links to the previous one", back, page.link);
  expect("previous page's entry", [seen[seen.length - 2]], ids(back));
  ok(`_count=1: ${total} pages followed with nextPage, ${total} distinct encounters, prevPage goes back`);
}

try {
  await main();
  console.log(`interop.mjs: all steps passed against ${base} with fhir-kit-client`);
} catch (e) {
  if (e instanceof Mismatch) {
    console.error(`FAIL ${step}: ${e.message}`);
  } else if (e.response) {
    // The library throws on a non-2xx answer; say which request and what the server said.
    const data = e.response.data;
    const said =
      data?.resourceType === "OperationOutcome"
        ? data.issue?.map((i) => `${i.severity} ${i.code}: ${i.diagnostics ?? ""}${i.expression ? ` at ${i.expression}` : ""}`).join("; ")
        : JSON.stringify(data);
    console.error(`FAIL ${step}: ${e.message}: ${said}`);
  } else {
    console.error(`FAIL ${step}: ${e.stack ?? e}`);
  }
  process.exit(1);
}
