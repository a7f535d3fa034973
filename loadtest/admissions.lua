-- wrk script: every request admits a NEW patient with a transaction Bundle shaped like
-- schemas/examples/admission-bundle.json (Patient with an MR-typed identifier + inpatient
-- Encounter), spread over 200 wards of 30 beds.
--
--   wrk -t2 -c32 -d20s --latency -s loadtest/admissions.lua http://127.0.0.1:PORT/fhir -- <tag> <threads>
--
-- <tag> makes every MRN and Encounter identifier unique to one wrk invocation (use a new tag
-- for each run against the same server); <threads> must equal -t. Request k of thread t is
-- admission number g = k * threads + t: MRN "<tag>-<g>", Encounter identifier "<tag>-S<g>",
-- ward g % 200 + 1, bed (g / 200) % 30 + 1 — consecutive requests (in a thread and across
-- threads) go to different wards.
--
-- done() prints one line "WRKJSON {...}" with requests, req/s, non-2xx (wrk counts every
-- status >= 400; Wardwatch answers no 1xx/3xx), socket errors and latency percentiles in ms.

local next_thread = 0
local threads = {}

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local tag, nthreads, k
local head = '{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:2f6b9f1e-0d2c-4c53-9a53-%012x",'
  .. '"resource":{"resourceType":"Patient","identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},'
  .. '"system":"https://fhir.example-hospital.nhs.uk/Id/mrn","value":"%s-%d"}],'
  .. '"name":[{"use":"official","family":"Bench","given":["Load"]}],"gender":"%s","birthDate":"1950-03-14"},'
  .. '"request":{"method":"POST","url":"Patient"}},'
  .. '{"fullUrl":"urn:uuid:2f6b9f1e-0d2c-4c53-9a53-%012x","resource":{"resourceType":"Encounter",'
  .. '"identifier":[{"system":"https://fhir.example-hospital.nhs.uk/Id/spell","value":"%s-S%d"}],"status":"in-progress",'
  .. '"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP","display":"inpatient encounter"},'
  .. '"subject":{"reference":"urn:uuid:2f6b9f1e-0d2c-4c53-9a53-%012x"},"period":{"start":"2026-11-27T08:00:00Z"},'
  .. '"location":[{"location":{"display":"Ward %03d"},"status":"active","physicalType":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/location-physical-type","code":"wa"}]}},'
  .. '{"location":{"display":"Bed %02d"},"status":"active","physicalType":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/location-physical-type","code":"bd"}]}}]},'
  .. '"request":{"method":"POST","url":"Encounter"}}]}'

function init(args)
  tag = args[1] or "bench"
  nthreads = tonumber(args[2]) or 1
  k = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/fhir+json"
end

function request()
  local g = k * nthreads + tid
  k = k + 1
  local ward = g % 200 + 1
  local bed = math.floor(g / 200) % 30 + 1
  local gender = (g % 2 == 0) and "female" or "male"
  local body = string.format(head, g * 2, tag, g, gender, g * 2 + 1, tag, g, g * 2, ward, bed)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,"non2xx":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
      .. '"latency_ms":{"mean":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f}}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
