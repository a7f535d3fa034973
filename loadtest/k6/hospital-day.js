// A "hospital day": two scenarios at constant arrival rates, side by side.
//
//   clinical (RATE iterations/s, default 200): each iteration is one request, chosen by weight
//     30 % admission    POST /fhir, a transaction Bundle admitting a NEW patient (lib.js)
//     15 % transfer     POST /fhir, the same Bundle (same MRN, same Encounter identifier) with
//                       another ward and bed, for a patient this VU admitted and still has in
//     15 % discharge    POST /fhir, the same Bundle with the Encounter "finished"; the patient
//                       leaves this VU's list
//     40 % lab result   POST /lab-feed, a potassium Observation for a patient this VU has in,
//                       subject by MRN; CRITICAL_PCT (20) % of them critical (7.1 mmol/L, which
//                       raises an alert), the rest normal (4.2 mmol/L)
//     A transfer, discharge or result drawn while the VU has nobody in is an admission instead.
//   board (BOARD_RATE reads/s, default 10): 40 % GET /api/inpatients, 40 % GET /api/alerts,
//     20 % GET / (the HTML board).
//
// Every request is tagged kind=admit|transfer|discharge|lab|inpatients|alerts|board and has a
// check on its status (200). The event stream (SSE) is not read: stock k6 cannot.
//
//   k6 run loadtest/k6/hospital-day.js
//
// Env: BASE_URL, RATE, BOARD_RATE, DURATION (30s), CRITICAL_PCT, TAG, P95_MS (50), P99_MS (100)
// for the clinical requests (all together and per kind), BOARD_P99_MS (500) for board reads, SUMMARY (default
// target/k6/hospital-day-summary.json).
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import {
  BASE, FHIR_HEADERS, admissionBundle, potassium, mrnOf, wardOf, bedOf, setupRun, summarize,
  TREND_STATS, WARDS, BEDS, pad,
} from './lib.js';

const RATE = Number(__ENV.RATE || 200);
const BOARD_RATE = Number(__ENV.BOARD_RATE || 10);
const CRITICAL_PCT = Number(__ENV.CRITICAL_PCT || 20);
const MAX_VUS = Number(__ENV.MAX_VUS || 300);
const BOARD_MAX_VUS = 50;
// VU ids are numbered across both scenarios: at most MAX_VUS + BOARD_MAX_VUS of them.
const VU_SPAN = MAX_VUS + BOARD_MAX_VUS;
const P95 = Number(__ENV.P95_MS || 50);
const P99 = Number(__ENV.P99_MS || 100);
const BOARD_P99 = Number(__ENV.BOARD_P99_MS || 500);
const DURATION = __ENV.DURATION || '30s';

export const options = {
  scenarios: {
    clinical: {
      executor: 'constant-arrival-rate',
      exec: 'clinical',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Number(__ENV.VUS || 40),
      maxVUs: MAX_VUS,
    },
    board: {
      executor: 'constant-arrival-rate',
      exec: 'board',
      rate: BOARD_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 5,
      maxVUs: BOARD_MAX_VUS,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    'http_req_duration{scenario:clinical}': [`p(95)<${P95}`, `p(99)<${P99}`],
    'http_req_duration{kind:admit}': [`p(99)<${P99}`],
    'http_req_duration{kind:transfer}': [`p(99)<${P99}`],
    'http_req_duration{kind:discharge}': [`p(99)<${P99}`],
    'http_req_duration{kind:lab}': [`p(99)<${P99}`],
    'http_req_duration{kind:inpatients}': [`p(99)<${BOARD_P99}`],
    'http_req_duration{kind:alerts}': [`p(99)<${BOARD_P99}`],
    'http_req_duration{kind:board}': [`p(99)<${BOARD_P99}`],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return setupRun();
}

// Per VU (each VU has its own copy of module state): the patients it admitted and still has in.
const inside = [];
let admitted = 0;
let results = 0;

function post(path, body, headers, kind) {
  const r = http.post(`${BASE}${path}`, body, { headers, tags: { kind } });
  check(r, { [`${kind} 200`]: (res) => res.status === 200 }, { kind });
  return r;
}

function admit(tag) {
  // Unique across VUs (ids are 1..VU_SPAN); consecutive admissions spread over wards.
  const g = admitted * VU_SPAN + (exec.vu.idInTest - 1);
  admitted += 1;
  const r = post('/fhir', admissionBundle(tag, g), FHIR_HEADERS, 'admit');
  if (r.status === 200) inside.push({ g, ward: wardOf(g), bed: bedOf(g) });
}

export function clinical(data) {
  const tag = data.tag;
  const roll = Math.random() * 100;
  if (roll < 30 || inside.length === 0) {
    admit(tag);
    return;
  }
  const i = Math.floor(Math.random() * inside.length);
  const p = inside[i];
  if (roll < 45) {
    p.ward = `Ward ${pad(Math.floor(Math.random() * WARDS) + 1, 3)}`;
    p.bed = `Bed ${pad(Math.floor(Math.random() * BEDS) + 1, 2)}`;
    post('/fhir', admissionBundle(tag, p.g, p.ward, p.bed), FHIR_HEADERS, 'transfer');
  } else if (roll < 60) {
    const r = post('/fhir', admissionBundle(tag, p.g, p.ward, p.bed, 'finished'), FHIR_HEADERS, 'discharge');
    if (r.status === 200) inside.splice(i, 1);
  } else {
    results += 1;
    const critical = Math.random() * 100 < CRITICAL_PCT;
    const id = `${tag}-L${exec.vu.idInTest}-${results}`;
    post('/lab-feed', potassium(mrnOf(tag, p.g), id, critical ? 7.1 : 4.2), { 'Content-Type': 'application/json' }, 'lab');
  }
}

export function board() {
  const roll = Math.random() * 100;
  let path = '/';
  let kind = 'board';
  if (roll < 40) {
    path = '/api/inpatients';
    kind = 'inpatients';
  } else if (roll < 80) {
    path = '/api/alerts';
    kind = 'alerts';
  }
  const r = http.get(`${BASE}${path}`, { tags: { kind } });
  check(r, { [`${kind} 200`]: (res) => res.status === 200 }, { kind });
}

export function handleSummary(data) {
  return summarize('hospital-day', data);
}
