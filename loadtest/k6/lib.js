// Shared by the k6 scripts in this folder (stock k6 modules only; no remote imports).
//
// Data mirrors loadtest/admissions.lua so figures compare: admission number g has MRN
// "<tag>-<g>", Encounter identifier "<tag>-S<g>", ward "Ward {g mod 200 + 1}" ("Ward 001" …
// "Ward 200") and bed "Bed {floor(g / 200) mod 30 + 1}" ("Bed 01" … "Bed 30").

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

export const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const WARDS = 200;
export const BEDS = 30;

const MRN_SYSTEM = 'https://fhir.example-hospital.nhs.uk/Id/mrn';
const SPELL_SYSTEM = 'https://fhir.example-hospital.nhs.uk/Id/spell';
const PT = 'http://terminology.hl7.org/CodeSystem/location-physical-type';

export const FHIR_HEADERS = { 'Content-Type': 'application/fhir+json' };

// The run tag: __ENV.TAG, else one made from the start time. Call it in setup() and pass the
// result to the VUs (setup runs once; init code runs once per VU, at different times).
export function runTag() {
  return __ENV.TAG || `k6${Date.now().toString(36)}`;
}

export function pad(n, width) {
  let s = String(n);
  while (s.length < width) s = `0${s}`;
  return s;
}

export function wardOf(g) {
  return `Ward ${pad((g % WARDS) + 1, 3)}`;
}

export function bedOf(g) {
  return `Bed ${pad((Math.floor(g / WARDS) % BEDS) + 1, 2)}`;
}

export function mrnOf(tag, g) {
  return `${tag}-${g}`;
}

function uuid(n) {
  return `urn:uuid:2f6b9f1e-0d2c-4c53-9a53-${pad(n.toString(16), 12)}`;
}

// A transaction Bundle shaped like schemas/examples/admission-bundle.json for admission g.
// Sent again with another ward/bed it is a transfer; with status "finished", a discharge
// (the Encounter is known by its identifier).
export function admissionBundle(tag, g, ward, bed, status) {
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: uuid(g * 2),
        resource: {
          resourceType: 'Patient',
          identifier: [
            {
              use: 'usual',
              type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] },
              system: MRN_SYSTEM,
              value: mrnOf(tag, g),
            },
          ],
          name: [{ use: 'official', family: 'Bench', given: ['Load'] }],
          gender: g % 2 === 0 ? 'female' : 'male',
          birthDate: '1950-03-14',
        },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: uuid(g * 2 + 1),
        resource: {
          resourceType: 'Encounter',
          identifier: [{ system: SPELL_SYSTEM, value: `${tag}-S${g}` }],
          status: status || 'in-progress',
          class: {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
            code: 'IMP',
            display: 'inpatient encounter',
          },
          subject: { reference: uuid(g * 2) },
          period: { start: '2026-11-27T08:00:00Z' },
          location: [
            { location: { display: ward || wardOf(g) }, status: 'active', physicalType: { coding: [{ system: PT, code: 'wa' }] } },
            { location: { display: bed || bedOf(g) }, status: 'active', physicalType: { coding: [{ system: PT, code: 'bd' }] } },
          ],
        },
        request: { method: 'POST', url: 'Encounter' },
      },
    ],
  });
}

// A potassium Observation shaped like schemas/examples/potassium-critical.json for the patient
// with MRN mrn; result identifier id; value in mmol/L (>= 6.5 is critical).
export function potassium(mrn, id, value) {
  const now = new Date();
  const taken = new Date(now.getTime() - 30 * 60 * 1000);
  return JSON.stringify({
    resourceType: 'Observation',
    identifier: [{ system: 'https://lab.example-hospital.nhs.uk/Id/result', value: id }],
    status: 'final',
    category: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
    ],
    code: { coding: [{ system: 'http://loinc.org', code: '2823-3', display: 'Potassium [Moles/volume] in Serum or Plasma' }] },
    subject: { identifier: { system: MRN_SYSTEM, value: mrn } },
    effectiveDateTime: taken.toISOString(),
    issued: now.toISOString(),
    valueQuantity: { value, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
  });
}

export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'];

function fmt(v) {
  return v === undefined || v === null ? '-' : Number(v).toFixed(2);
}

// handleSummary for every script: the full k6 summary as JSON at SUMMARY (default
// target/k6/<script>-summary.json, relative to where k6 runs), plus a short text report on
// stdout (stock k6 has no text summary once handleSummary is defined, and the jslib one is a
// remote import).
export function summarize(script, data) {
  const path = __ENV.SUMMARY || `target/k6/${script}-summary.json`;
  const m = data.metrics;
  const lines = [];
  const dur = m.http_req_duration ? m.http_req_duration.values : {};
  const reqs = m.http_reqs ? m.http_reqs.values : {};
  const failed = m.http_req_failed ? m.http_req_failed.values : {};
  const dropped = m.dropped_iterations ? m.dropped_iterations.values.count : 0;
  const secs = data.state.testRunDurationMs / 1000;
  lines.push(`${script}: ${secs.toFixed(1)} s, ${reqs.count || 0} requests, ${fmt(reqs.rate)} req/s, ` +
    `failed ${failed.passes || 0} (${fmt((failed.rate || 0) * 100)} %), dropped iterations ${dropped}`);
  lines.push(`  http_req_duration ms: p50 ${fmt(dur.med)}  p90 ${fmt(dur['p(90)'])}  p95 ${fmt(dur['p(95)'])}  ` +
    `p99 ${fmt(dur['p(99)'])}  max ${fmt(dur.max)}`);
  Object.keys(m).sort().forEach((name) => {
    const metric = m[name];
    if (name.startsWith('http_req_duration{') && metric.values) {
      const v = metric.values;
      lines.push(`  ${name} ms: p50 ${fmt(v.med)}  p95 ${fmt(v['p(95)'])}  p99 ${fmt(v['p(99)'])}  max ${fmt(v.max)}`);
    }
  });
  if (m.checks) {
    lines.push(`  checks: ${m.checks.values.passes} passed, ${m.checks.values.fails} failed`);
  }
  let ok = true;
  Object.keys(m).sort().forEach((name) => {
    const th = m[name].thresholds;
    if (!th) return;
    Object.keys(th).forEach((expr) => {
      const pass = th[expr].ok;
      if (!pass) ok = false;
      lines.push(`  threshold ${pass ? 'ok  ' : 'FAIL'} ${name}: ${expr}`);
    });
  });
  lines.push(`  thresholds: ${ok ? 'all passed' : 'SOME FAILED'}; summary JSON: ${path}`);
  const out = { stdout: `\n${lines.join('\n')}\n\n` };
  out[path] = JSON.stringify(data, null, 2);
  return out;
}

// setup() of every script: the server must answer, and the run gets its tag.
export function setupRun() {
  const r = http.get(`${BASE}/healthz`);
  if (r.status !== 200) throw new Error(`no Wardwatch at ${BASE} (GET /healthz: ${r.status} ${r.error})`);
  return { tag: runTag() };
}

// One admission of a new patient: iteration g of the test admits MRN "<tag>-<g>".
export function admitNew(data) {
  const g = exec.scenario.iterationInTest;
  const r = http.post(`${BASE}/fhir`, admissionBundle(data.tag, g), { headers: FHIR_HEADERS });
  check(r, { 'admission 200': (res) => res.status === 200 });
}
