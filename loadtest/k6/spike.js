// A spike of admissions (ramping arrival rate), each a NEW patient as in admissions.js:
// BASE_RATE/s (50) for 5 s, up to PEAK/s (1500) in 2 s, PEAK for 10 s, down to BASE_RATE in
// 2 s, BASE_RATE for 5 s: 24 s in all.
//
//   k6 run loadtest/k6/spike.js
//
// Thresholds: no failed request and every check passed; p99 is reported with P99_MS (250) as a
// loose bound — the spike is for errors and recovery, not latency. Env: BASE_URL, BASE_RATE,
// PEAK, PEAK_FOR (10s), VUS (100), MAX_VUS (1000), TAG, P99_MS, SUMMARY (default
// target/k6/spike-summary.json).
import { admitNew, setupRun, summarize, TREND_STATS } from './lib.js';

const BASE_RATE = Number(__ENV.BASE_RATE || 50);
const PEAK = Number(__ENV.PEAK || 1500);
const P99 = Number(__ENV.P99_MS || 250);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: Number(__ENV.VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
      stages: [
        { target: BASE_RATE, duration: '5s' },
        { target: PEAK, duration: '2s' },
        { target: PEAK, duration: __ENV.PEAK_FOR || '10s' },
        { target: BASE_RATE, duration: '2s' },
        { target: BASE_RATE, duration: '5s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    http_req_duration: [`p(99)<${P99}`],
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
  return summarize('spike', data);
}
