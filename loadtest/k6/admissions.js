// Admissions at a constant arrival rate: every iteration POSTs a transaction Bundle to /fhir
// that admits a NEW patient (data as loadtest/admissions.lua: see lib.js).
//
//   k6 run loadtest/k6/admissions.js
//
// Env: BASE_URL (http://127.0.0.1:8080), RATE admissions/s (500), DURATION (30s), VUS
// pre-allocated VUs (100), MAX_VUS (400), TAG (run tag; default from the start time — use a new
// one for each run against the same server), P95_MS (25), P99_MS (50), SUMMARY (JSON path,
// default target/k6/admissions-summary.json).
import { admitNew, setupRun, summarize, TREND_STATS } from './lib.js';

const RATE = Number(__ENV.RATE || 500);
const P95 = Number(__ENV.P95_MS || 25);
const P99 = Number(__ENV.P99_MS || 50);

export const options = {
  scenarios: {
    admissions: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 400),
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: [`p(95)<${P95}`, `p(99)<${P99}`],
    checks: ['rate==1'],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return setupRun();
}

export default function (data) {
  admitNew(data);
}

export function handleSummary(data) {
  return summarize('admissions', data);
}
