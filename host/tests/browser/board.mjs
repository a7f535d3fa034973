// The ward board in a real browser: Debian's Chromium, headless, driven by playwright-core.
// Started by host/tests/integration/browser.rs (`cargo test`), one scenario per run:
//
//   node board.mjs <scenario>
//
// Environment: WARDWATCH_BIN (the `wardwatch` binary), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT (where the `alerts` scenario saves a picture of a ward with alerts), and for the
// `restart` scenario REDIS_URL, AMQP_URL and STATE_KEY_PREFIX (the test's own).
//
// Scenarios:
//   admission   a patient admitted over /fhir appears on the open page without reload
//   alerts      a critical potassium posted to /lab-feed shows its alert without reload (and
//               every visible text on the page meets WCAG AA contrast, 4.5:1)
//   acknowledge Acknowledge on one page, by keyboard alone, updates a second open page
//   offline     a page cut off while two alerts are raised shows both after it reconnects
//   restart     Redis + RabbitMQ: the host is killed and restarted while a page is open; alerts
//               raised meanwhile appear after the page reconnects, none missing, none doubled
//   discharged  a discharged patient's unacknowledged alert appears under "Discharged — needs
//               follow-up", is acknowledged there by keyboard alone and leaves that list; the
//               patient page's audit section shows it acknowledged (both pages meet WCAG AA)
//
// Waits are generous (the latency itself belongs in the benchmarks, not in a test).

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import net from "node:net";

const WAIT = 30000;
const scenario = process.argv[2];
const bin = process.env.WARDWATCH_BIN;
if (!bin) fail("WARDWATCH_BIN is not set (run this through `cargo test`)");

function fail(message) {
  console.error(`board.mjs ${scenario}: ${message}`);
  process.exit(1);
}

const run = Math.random().toString(36).slice(2, 8);

// --- the host ------------------------------------------------------------------------------

async function startHost(extra = [], env = {}, port = 0) {
  const proc = spawn(bin, ["up", "--listen", `127.0.0.1:${port}`, ...extra], {
    env: { ...process.env, RUST_LOG: "warn,wardwatch=info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the host did not start in 60 s:\n${log}`)), 60000);
    const seen = (chunk) => {
      log += chunk.toString();
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stdout.on("data", seen);
    proc.stderr.on("data", seen);
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`the host exited (${code}):\n${log}`)); });
  });
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch { /* not yet */ }
    await sleep(100);
  }
  const host = { proc, base, port: Number(new URL(base).port), log: () => log };
  proc.on("exit", () => { host.exited = true; });
  return host;
}

function kill(host) {
  return new Promise((resolve) => {
    if (host.exited) return resolve();
    host.proc.once("exit", resolve);
    host.proc.kill("SIGKILL");
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function post(base, path, body, contentType = "application/fhir+json") {
  const r = await fetch(base + path, { method: "POST", headers: { "content-type": contentType }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`POST ${path} answered ${r.status}: ${await r.text()}`);
  return r;
}

// --- a proxy the browser reaches the host through, so that a test can cut it off -------------

function proxy(targetPort) {
  const sockets = new Set();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        base: `http://127.0.0.1:${server.address().port}`,
        cutOff() { cut = true; for (const s of sockets) s.destroy(); },
        restore() { cut = false; },
        close() { server.close(); for (const s of sockets) s.destroy(); },
      });
    });
  });
}

// --- test data -------------------------------------------------------------------------------

const MRN_SYSTEM = "https://fhir.example-hospital.nhs.uk/Id/mrn";

function admission(mrn, family, ward, bed) {
  return {
    resourceType: "Bundle",
    type: "transaction",
    entry: [
      {
        fullUrl: `urn:uuid:00000000-0000-4000-8000-${mrn.replace(/[^0-9a-f]/gi, "").padStart(12, "0").slice(-12)}`,
        resource: {
          resourceType: "Patient",
          identifier: [{ type: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/v2-0203", code: "MR" }] }, system: MRN_SYSTEM, value: mrn }],
          name: [{ family, given: ["Test"] }],
          gender: "female",
          birthDate: "1951-04-02",
        },
        request: { method: "POST", url: "Patient" },
      },
      {
        resource: {
          resourceType: "Encounter",
          identifier: [{ system: "https://fhir.example-hospital.nhs.uk/Id/spell", value: `S-${mrn}` }],
          status: "in-progress",
          class: { system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "IMP" },
          subject: { identifier: { system: MRN_SYSTEM, value: mrn } },
          period: { start: new Date(Date.now() - 2 * 86400000).toISOString() },
          location: [
            { location: { display: ward }, physicalType: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/location-physical-type", code: "wa" }] } },
            { location: { display: bed }, physicalType: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/location-physical-type", code: "bd" }] } },
          ],
        },
        request: { method: "POST", url: "Encounter" },
      },
    ],
  };
}

function potassium(mrn, resultId, value) {
  const now = new Date().toISOString();
  return {
    resourceType: "Observation",
    identifier: [{ system: "https://lab.example-hospital.nhs.uk/Id/result", value: resultId }],
    status: "final",
    category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "laboratory" }] }],
    code: { coding: [{ system: "http://loinc.org", code: "2823-3", display: "Potassium" }] },
    subject: { identifier: { system: MRN_SYSTEM, value: mrn } },
    effectiveDateTime: now,
    issued: now,
    valueQuantity: { value, unit: "mmol/L", system: "http://unitsofmeasure.org", code: "mmol/L" },
  };
}

// A second analyte, so that two results raise two alerts that both stay open (a low potassium
// after a high one would clear the high one: a later result that does not meet a rule resolves
// its alert).
function sodium(mrn, resultId, value) {
  const o = potassium(mrn, resultId, value);
  o.code = { coding: [{ system: "http://loinc.org", code: "2951-2", display: "Sodium" }] };
  return o;
}

// --- the browser -----------------------------------------------------------------------------

async function browser() {
  try {
    return await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
  } catch (e) {
    fail(`Chromium did not start (${e.message.split("\n")[0]}). Install it with: apt-get install -y chromium`);
  }
}

async function open(b, url) {
  const context = await b.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector('body[data-live="live-ok"]', { timeout: WAIT });
  page.scriptErrors = errors;
  return page;
}

const alertItems = (page, mrn) => page.locator("li.alert", { hasText: `MRN ${mrn}` });

async function expectCount(locator, n, what) {
  try {
    await locator.nth(n - 1).waitFor({ timeout: WAIT });
  } catch {
    throw new Error(`${what}: expected ${n}, found ${await locator.count()} after ${WAIT / 1000} s`);
  }
  await sleep(300);
  const count = await locator.count();
  if (count !== n) throw new Error(`${what}: expected ${n}, found ${count}`);
}

function noDuplicates(ids, what) {
  const seen = new Set();
  for (let i = 0; i < ids.length; i++) {
    if (seen.has(ids[i])) throw new Error(`${what}: event ${ids[i]} arrived twice (${ids.join(", ")})`);
    seen.add(ids[i]);
  }
}

// Runs in the page: every visible element with its own text whose colour against its effective
// background is below 4.5:1 (WCAG 2.x AA for normal text).
function contrastFailures() {
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.offsetParent && el.tagName !== "BODY") continue;
    const fg = lum(rgb(getComputedStyle(el).color));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) out.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return out;
}

// --- scenarios -------------------------------------------------------------------------------

const scenarios = {
  async admission() {
    const host = await startHost();
    const b = await browser();
    try {
      const page = await open(b, host.base + "/");
      const mrn = `ADM-${run}`;
      await post(host.base, "/fhir", admission(mrn, "Arrival", "Ward 3A", "Bed 12"));
      const row = page.locator("tr.patient", { hasText: `MRN ${mrn}` });
      await row.waitFor({ timeout: WAIT });
      const text = await row.innerText();
      if (!text.includes("Bed 12") || !text.includes("Arrival")) throw new Error(`row shows: ${text}`);
      if (!(await page.locator("h3", { hasText: "Ward 3A" }).count())) throw new Error("no Ward 3A heading");
      if (page.scriptErrors.length) throw new Error(`script errors: ${page.scriptErrors}`);
    } finally {
      await b.close();
      await kill(host);
    }
  },

  async alerts() {
    const host = await startHost();
    const b = await browser();
    try {
      const page = await open(b, host.base + "/");
      const wards = [["Ward 7B", "Bed 4", "Okafor", 7.1], ["Ward 7B", "Bed 6", "Singh", 2.4], ["Ward 7B", "Bed 9", "Jones", 4.2], ["Ward 9", "Bed 1", "Novak", 6.9]];
      for (const [i, [ward, bed, family]] of wards.entries()) {
        await post(host.base, "/fhir", admission(`K${i}-${run}`, family, ward, bed));
      }
      // An earlier, lower potassium for the first patient: its row shows the rise.
      await post(host.base, "/lab-feed", { ...potassium(`K0-${run}`, `LAB-${run}-early`, 5.9), effectiveDateTime: new Date(Date.now() - 6 * 3600000).toISOString() });
      for (const [i, [, , , value]] of wards.entries()) {
        await post(host.base, "/lab-feed", potassium(`K${i}-${run}`, `LAB-${run}-${i}`, value));
      }
      await expectCount(alertItems(page, `K0-${run}`), 1, "alerts for the 7.1 potassium");
      await expectCount(page.locator("li.alert"), 3, "alerts on the board (7.1, 2.4, 6.9)");
      const first = await alertItems(page, `K0-${run}`).innerText();
      if (!first.includes("7.1 mmol/L")) throw new Error(`the alert shows: ${first}`);
      const row = await page.locator("tr.patient", { hasText: `MRN K0-${run}` }).innerText();
      if (!row.includes("Potassium") || !row.includes("7.1") || !row.includes("rising")) throw new Error(`the ward row shows: ${row}`);
      // One alert acknowledged over the API, so the picture shows both states.
      const active = await (await fetch(`${host.base}/api/alerts?status=active`)).json();
      const novak = active.find((a) => a.mrn === `K3-${run}`);
      await post(host.base, `/api/alerts/${novak.id}/ack`, { by: "Dr Shah (FY2)", note: "repeat sample sent", patient_id: novak.patient_id }, "application/json");
      await alertItems(page, `K3-${run}`).locator(".acked").waitFor({ timeout: WAIT });
      if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: false });
      const low = await page.evaluate(contrastFailures);
      if (low.length) throw new Error(`text below WCAG AA contrast (4.5:1): ${low.join("; ")}`);
      if (page.scriptErrors.length) throw new Error(`script errors: ${page.scriptErrors}`);
    } finally {
      await b.close();
      await kill(host);
    }
  },

  async acknowledge() {
    const host = await startHost();
    const b = await browser();
    try {
      const mrn = `ACK-${run}`;
      await post(host.base, "/fhir", admission(mrn, "Acker", "Ward 5", "Bed 2"));
      await post(host.base, "/lab-feed", potassium(mrn, `LAB-ACK-${run}`, 7.4));
      const one = await open(b, host.base + "/");
      const two = await open(b, host.base + "/");
      for (const p of [one, two]) await expectCount(alertItems(p, mrn), 1, "the alert before acknowledging");
      await one.fill("#ack-name", "Charge Nurse Patel");
      // By keyboard alone: type the note, Tab to the button, Enter.
      const item = alertItems(one, mrn);
      await item.locator('input[name="note"]').focus();
      await one.keyboard.type("doctor informed");
      await one.keyboard.press("Tab");
      const focused = await one.evaluate(() => document.activeElement && document.activeElement.textContent);
      if (focused !== "Acknowledge") throw new Error(`Tab from the note reached "${focused}", not the Acknowledge button`);
      await one.keyboard.press("Enter");
      const acked = alertItems(two, mrn).locator(".acked", { hasText: "Charge Nurse Patel" });
      await acked.waitFor({ timeout: WAIT });
      const text = await acked.innerText();
      if (!text.includes("doctor informed")) throw new Error(`the second page shows: ${text}`);
      if (await alertItems(two, mrn).getByRole("button", { name: "Acknowledge" }).count()) {
        throw new Error("the second page still offers Acknowledge");
      }
      const api = await (await fetch(`${host.base}/api/alerts?status=acknowledged`)).json();
      if (api.length !== 1) throw new Error(`/api/alerts?status=acknowledged has ${api.length}`);
    } finally {
      await b.close();
      await kill(host);
    }
  },

  async offline() {
    const host = await startHost();
    const gate = await proxy(host.port);
    const b = await browser();
    try {
      const mrn = `OFF-${run}`;
      await post(host.base, "/fhir", admission(mrn, "Quiet", "Ward 2", "Bed 8"));
      const page = await open(b, gate.base + "/");
      gate.cutOff();
      await page.waitForSelector('body[data-live="reconnecting"]', { timeout: WAIT });
      await post(host.base, "/lab-feed", potassium(mrn, `LAB-OFF1-${run}`, 7.2));
      await post(host.base, "/lab-feed", sodium(mrn, `LAB-OFF2-${run}`, 118));
      await sleep(1000);
      if (await alertItems(page, mrn).count()) throw new Error("the page showed alerts while cut off");
      gate.restore();
      await expectCount(alertItems(page, mrn), 2, "alerts after reconnecting");
      noDuplicates(await page.evaluate(() => window.wardwatchBoard.received), "events received");
    } finally {
      await b.close();
      gate.close();
      await kill(host);
    }
  },

  async restart() {
    for (const v of ["REDIS_URL", "AMQP_URL", "STATE_KEY_PREFIX"]) if (!process.env[v]) fail(`${v} is not set`);
    const args = ["--redis", process.env.REDIS_URL, "--amqp", process.env.AMQP_URL];
    let host = await startHost(args);
    const gate = await proxy(host.port);
    const b = await browser();
    try {
      const mrn = `RST-${run}`;
      await post(host.base, "/fhir", admission(mrn, "Restart", "Ward 4", "Bed 3"));
      const page = await open(b, gate.base + "/");
      await page.locator("tr.patient", { hasText: `MRN ${mrn}` }).waitFor({ timeout: WAIT });
      const before = await page.evaluate(() => window.wardwatchBoard.received.length);
      // Kill the host while the page is open, and keep the page cut off until the alerts are in.
      await kill(host);
      gate.cutOff();
      await page.waitForSelector('body[data-live="reconnecting"]', { timeout: WAIT });
      host = await startHost(args, {}, host.port);
      await post(host.base, "/lab-feed", potassium(mrn, `LAB-RST1-${run}`, 7.3));
      await post(host.base, "/lab-feed", sodium(mrn, `LAB-RST2-${run}`, 117));
      // Both alerts are raised (evaluate-alert runs from the lab-resulted queue).
      for (let i = 0; ; i++) {
        const alerts = await (await fetch(`${host.base}/api/alerts`)).json();
        if (alerts.filter((a) => a.mrn === mrn).length === 2) break;
        if (i > 300) throw new Error(`the restarted host raised ${alerts.length} alerts`);
        await sleep(100);
      }
      gate.restore();
      await expectCount(alertItems(page, mrn), 2, "alerts after the restart");
      await page.waitForSelector('body[data-live="live-ok"]', { timeout: WAIT });
      const received = await page.evaluate(() => window.wardwatchBoard.received);
      noDuplicates(received, "events received across the restart");
      const after = received.slice(before);
      // result-stored ×2 and alert-raised ×2 at least, all after what the page had seen.
      if (after.length < 4) throw new Error(`only ${after.length} events arrived after the restart: ${after}`);
      const sorted = [...received].sort((x, y) => {
        const [a1, a2] = x.split("-").map(BigInt);
        const [b1, b2] = y.split("-").map(BigInt);
        return a1 === b1 ? (a2 < b2 ? -1 : a2 > b2 ? 1 : 0) : a1 < b1 ? -1 : 1;
      });
      if (sorted.join() !== received.join()) throw new Error(`events arrived out of order: ${received}`);
    } finally {
      await b.close();
      gate.close();
      await kill(host);
    }
  },
};

scenarios.discharged = async function discharged() {
  const host = await startHost();
  const b = await browser();
  try {
    const mrn = `DIS-${run}`;
    await post(host.base, "/fhir", admission(mrn, "Leaver", "Ward 6", "Bed 1"));
    await post(host.base, "/lab-feed", potassium(mrn, `LAB-DIS-${run}`, 7.6));
    const page = await open(b, host.base + "/");
    await expectCount(alertItems(page, mrn), 1, "the alert while the patient is on the ward");
    // Discharged before anyone acknowledged the alert.
    const leaving = admission(mrn, "Leaver", "Ward 6", "Bed 1");
    leaving.entry[1].resource.status = "finished";
    leaving.entry[1].resource.period.end = new Date().toISOString();
    await post(host.base, "/fhir", leaving);
    const section = page.locator("section.discharged");
    const row = section.locator("li.follow-up", { hasText: `MRN ${mrn}` });
    await row.waitFor({ timeout: WAIT });
    const text = await row.innerText();
    if (!text.includes("1 to acknowledge") || !text.includes("Leaver")) throw new Error(`the follow-up row shows: ${text}`);
    if (await page.locator("tr.patient", { hasText: `MRN ${mrn}` }).count()) throw new Error("still shown on a ward");
    if (await page.locator("section.not-admitted li.follow-up", { hasText: `MRN ${mrn}` }).count()) {
      throw new Error("a discharged patient is listed as not admitted yet");
    }
    const low = await page.evaluate(contrastFailures);
    if (low.length) throw new Error(`board text below WCAG AA contrast (4.5:1): ${low.join("; ")}`);
    const patientId = await row.getAttribute("data-patient-id");
    // Acknowledged there, by keyboard alone: the note, Tab to the button, Enter.
    await page.fill("#ack-name", "Ward Sister Okoye");
    await row.locator('input[name="note"]').focus();
    await page.keyboard.type("GP letter sent");
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    if (focused !== "Acknowledge") throw new Error(`Tab from the note reached "${focused}", not the Acknowledge button`);
    await page.keyboard.press("Enter");
    await row.waitFor({ state: "detached", timeout: WAIT });
    await section.locator("p.empty").waitFor({ timeout: WAIT });
    // The API agrees: acknowledged, of a discharged patient, and the audit says so newest first.
    const identifier = encodeURIComponent(`${MRN_SYSTEM}|${mrn}`);
    const api = await (await fetch(`${host.base}/api/alerts?status=acknowledged&patient.identifier=${identifier}`)).json();
    if (api.length !== 1 || api[0].discharged !== true || api[0].acknowledged.by !== "Ward Sister Okoye") {
      throw new Error(`/api/alerts answers ${JSON.stringify(api)}`);
    }
    const audit = await (await fetch(`${host.base}/api/patients/${patientId}/audit`)).json();
    const actions = audit.audit.map((e) => e.action);
    if (actions.join() !== "acknowledged,raised") throw new Error(`the audit has ${actions}`);
    if (page.scriptErrors.length) throw new Error(`script errors: ${page.scriptErrors}`);
    // The patient page: the audit section says who acknowledged it.
    const patient = await open(b, `${host.base}/patients/${patientId}`);
    const auditSection = patient.locator("section.audit");
    await auditSection.locator("tr.audit-entry.acknowledged", { hasText: "Ward Sister Okoye" }).waitFor({ timeout: WAIT });
    const auditText = await auditSection.innerText();
    if (!auditText.includes("acknowledged") || !auditText.includes("raised")) throw new Error(`the audit section shows: ${auditText}`);
    const trail = await patient.locator("li.alert").first().innerText();
    if (!trail.includes("acknowledged by Ward Sister Okoye") || !trail.includes("GP letter sent")) throw new Error(`the trail shows: ${trail}`);
    const lowPatient = await patient.evaluate(contrastFailures);
    if (lowPatient.length) throw new Error(`patient page text below WCAG AA contrast (4.5:1): ${lowPatient.join("; ")}`);
    if (patient.scriptErrors.length) throw new Error(`script errors: ${patient.scriptErrors}`);
  } finally {
    await b.close();
    await kill(host);
  }
};

if (!scenarios[scenario]) fail(`no scenario "${scenario}"; one of: ${Object.keys(scenarios).join(", ")}`);
try {
  await scenarios[scenario]();
  console.log(`board.mjs ${scenario}: passed`);
  process.exit(0);
} catch (e) {
  fail(e.stack || String(e));
}
