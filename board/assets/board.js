// Wardwatch ward board: live updates over Server-Sent Events, Acknowledge, and recording renal
// replacement therapy on a patient's page. No build step, nothing fetched from elsewhere. The
// page is server-rendered; on every event (of any type) the server-rendered state is fetched
// again (GET data-fragment) and swapped in.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var live = document.getElementById("live");
  if (!board || !live) return;
  var state = board.querySelector("[data-event-id]");
  var lastId = state ? state.getAttribute("data-event-id") : "0-0";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  var source = null;
  var lastContact = Date.now();
  var staleSince = null;
  var refreshTimer = null;
  var refreshing = false;
  var again = false;
  var STALE_AFTER_MS = 45000; // three missed heartbeats
  // The ids of the events this page received, newest last (for diagnosis: a reload clears it).
  var received = [];
  window.wardwatchBoard = { received: received };

  function clock(d) {
    return ("0" + d.getUTCHours()).slice(-2) + ":" + ("0" + d.getUTCMinutes()).slice(-2);
  }
  function show(kind, text) {
    live.className = "live " + kind;
    live.textContent = text;
    document.body.setAttribute("data-live", kind);
  }
  function contact() {
    lastContact = Date.now();
    staleSince = null;
    show("live-ok", "Live");
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(board.getAttribute("data-fragment"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        // Keep what someone is typing in a note field, and where the focus is. An alert can
        // have two forms on the page (the feed, and the list of patients on no ward): each form
        // is known by its data-form.
        var notes = {};
        var key = function (f) { return f.getAttribute("data-form") || f.getAttribute("data-alert-id"); };
        board.querySelectorAll("form.ack").forEach(function (f) {
          var v = f.elements.note && f.elements.note.value;
          if (v) notes[key(f)] = v;
        });
        var focused = document.activeElement && board.contains(document.activeElement) ? document.activeElement : null;
        var focusForm = focused && focused.form && focused.form.classList.contains("ack") ? key(focused.form) : null;
        var focusName = focused ? focused.name : null;
        board.innerHTML = html;
        board.querySelectorAll("form.ack").forEach(function (f) {
          var id = key(f);
          if (notes[id]) f.elements.note.value = notes[id];
          if (focusForm === id && focusName && f.elements[focusName]) f.elements[focusName].focus();
        });
      })
      .catch(function () { /* the next event or reconnect tries again */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }
  function soon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 100);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/events/stream?after=" + encodeURIComponent(lastId));
    source.onopen = contact;
    source.onmessage = function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      received.push(e.lastEventId);
      if (received.length > 2000) received.shift();
      contact();
      soon();
    };
    source.addEventListener("heartbeat", contact);
    source.addEventListener("reset", function (e) {
      // The log no longer holds what this page last saw: reload the whole state.
      if (e.lastEventId) lastId = e.lastEventId;
      contact();
      refresh();
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (e.g. 503 while Redis is away): try again ourselves.
        setTimeout(connect, 3000);
      }
      if (!staleSince) staleSince = new Date(lastContact);
      show("reconnecting", "Reconnecting…");
    };
  }

  setInterval(function () {
    if (Date.now() - lastContact > STALE_AFTER_MS) {
      if (!staleSince) staleSince = new Date(lastContact);
      show("stale", "Stale since " + clock(staleSince) + " UTC");
      // A connection that went quiet without an error: start a new one.
      connect();
    } else if (staleSince && Date.now() - staleSince.getTime() > 10000) {
      show("stale", "Stale since " + clock(staleSince) + " UTC");
    }
  }, 5000);

  // Acknowledge.
  var nameInput = document.getElementById("ack-name");
  if (nameInput) {
    try { nameInput.value = window.localStorage.getItem("wardwatch-ack-name") || ""; } catch (e) { /* private mode */ }
    nameInput.addEventListener("change", function () {
      try { window.localStorage.setItem("wardwatch-ack-name", nameInput.value); } catch (e) { /* ignore */ }
    });
  }
  function headers() {
    var h = { "Content-Type": "application/json" };
    if (csrf) h["X-CSRF-Token"] = csrf.getAttribute("content");
    return h;
  }
  // Who acts: the signed-in name (the server knows it), else the name typed at the top.
  function actor(error) {
    if (!nameInput) return {};
    var by = nameInput.value.trim();
    if (!by) {
      error.textContent = "Type your name first (top right).";
      nameInput.focus();
      return null;
    }
    return { by: by };
  }
  function send(url, body, button, error, failed) {
    button.disabled = true;
    return fetch(url, {
      method: "POST", headers: headers(), body: JSON.stringify(body), credentials: "same-origin"
    }).then(function (r) {
      if (!r.ok) {
        return r.json().then(function (o) {
          var issue = o && o.issue && o.issue[0];
          throw new Error((issue && issue.diagnostics) || "HTTP " + r.status);
        }, function () { throw new Error("HTTP " + r.status); });
      }
      refresh();
    }).catch(function (e) {
      error.textContent = failed + e.message;
      button.disabled = false;
    });
  }

  board.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList) return;
    if (form.classList.contains("ack")) {
      ev.preventDefault();
      var error = form.querySelector(".error");
      var who = actor(error);
      if (!who) return;
      var body = { note: form.elements.note.value || null, patient_id: form.getAttribute("data-patient-id") };
      if (who.by) body.by = who.by;
      send("/api/alerts/" + encodeURIComponent(form.getAttribute("data-alert-id")) + "/ack",
        body, form.querySelector("button"), error, "Not acknowledged: ");
    } else if (form.classList.contains("rrt")) {
      // Renal replacement therapy: the button pressed says what to record.
      ev.preventDefault();
      var button = ev.submitter;
      if (!button || !button.value) return;
      var rrtError = form.querySelector(".error");
      var actorOf = actor(rrtError);
      if (!actorOf) return;
      if (button.value === "on-rrt" &&
          !window.confirm("Record renal replacement therapy? The AKI algorithm does not apply on it: this patient's AKI alerts will be withdrawn.")) {
        return;
      }
      var rrtBody = { rrt: button.value };
      if (actorOf.by) rrtBody.by = actorOf.by;
      send("/api/patients/" + encodeURIComponent(form.getAttribute("data-patient-id")) + "/rrt",
        rrtBody, button, rrtError, "Not recorded: ");
    }
  });

  connect();
})();
