/* DMP tag: records a page view on load and whatever the page passes to dmp.track().
 * Events are queued and sent in batches to /collect with navigator.sendBeacon (which
 * survives page unload), falling back to one pixel request per event. When the page
 * has an IAB TCF v2 CMP (window.__tcfapi) or a GPP CMP (window.__gpp, GPP CMP API v1.1 or 1.0),
 * its TC string or GPP string goes with every batch and nothing is sent until the CMP
 * has answered (with both, until both have). No dependencies, no cookies of its own:
 * the visitor cookie is set by the server (HttpOnly), so the first batch goes with
 * fetch and later ones wait for its answer: a new visitor gets one id, not one per
 * batch in flight.
 * dmp.getVisitorId(callback) hands the page that id (for Prebid's pubProvidedId): the
 * script cannot read the HttpOnly cookie, so it keeps the `uid` of the first answer and
 * calls back every waiting and later callback with it, or with null when there is none
 * to share (nothing stored: consent refused, opt-out; or no readable answer). The answer
 * is read through CORS (the page's origin must be one of the stack's cors_origins), and
 * only when the page asked before the first batch went: call it at load, e.g. through
 * dmp.que, whose functions (pushed before the tag loaded) run once it has. */
(function (w, d) {
  "use strict";
  if (w.dmp && w.dmp._loaded) return;
  var script = d.currentScript || (function () { var s = d.getElementsByTagName("script"); return s[s.length - 1]; })();
  var base = script && script.src ? script.src.replace(/\/tag\.js(\?.*)?$/, "") : "";
  var queue = [], consent = null, gpp = null, timer = null, seq = 0;
  var tcfReady = !w.__tcfapi, gppReady = !w.__gpp;
  var firstSent = false, inFlight = false, unloading = false;
  var visitorId = null, visitorIdKnown = false, visitorIdCallbacks = [];
  var MAX_BATCH = 50;

  function id() {
    seq += 1;
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10) + "-" + seq;
  }

  function cleanProps(props) {
    var out = {}, n = 0;
    if (!props || typeof props !== "object") return out;
    for (var k in props) {
      if (!Object.prototype.hasOwnProperty.call(props, k) || n >= 20) continue;
      if (!/^[a-z0-9_]{1,40}$/.test(k)) continue;
      out[k] = String(props[k]).slice(0, 256);
      n += 1;
    }
    return out;
  }

  function pixel(ev) {
    var q = ["e=" + encodeURIComponent(ev.e), "url=" + encodeURIComponent(ev.url),
             "ref=" + encodeURIComponent(ev.ref), "eid=" + encodeURIComponent(ev.eid)];
    if (consent) q.push("gdpr=" + (consent.gdprApplies ? 1 : 0), "gdpr_consent=" + encodeURIComponent(consent.tcString || ""));
    if (gpp) q.push("gpp=" + encodeURIComponent(gpp.gppString), "gpp_sid=" + encodeURIComponent(gpp.sid));
    for (var k in ev.props) q.push("p." + k + "=" + encodeURIComponent(ev.props[k]));
    var img = new Image(1, 1);
    img.src = base + "/p.gif?" + q.join("&");
  }

  // Each callback on its own turn: one that throws breaks neither the tag nor the others.
  function callBack(callback) { setTimeout(function () { callback(visitorId); }, 0); }

  function learnVisitorId(uid) {
    if (visitorIdKnown) return;
    visitorIdKnown = true;
    visitorId = typeof uid === "string" && uid ? uid : null;
    while (visitorIdCallbacks.length) callBack(visitorIdCallbacks.shift());
  }

  function getVisitorId(callback) {
    if (typeof callback !== "function") return;
    if (visitorIdKnown) callBack(callback); else visitorIdCallbacks.push(callback);
  }

  function answered(response) {
    if (!response.ok) { learnVisitorId(null); return; }  // also an unread (no-cors) answer
    response.json().then(function (answer) { learnVisitorId(answer && answer.uid); },
                         function () { learnVisitorId(null); });
  }

  function beacon(payload, batch) {
    var sent = false;
    try {
      if (navigator.sendBeacon) {
        sent = navigator.sendBeacon(base + "/collect", new Blob([payload], { type: "text/plain" }));
      }
    } catch (e) { sent = false; }
    if (!sent) for (var i = 0; i < batch.length; i++) pixel(batch[i]);
  }

  function send(batch) {
    var body = { events: batch };
    if (consent) { body.gdpr = consent.gdprApplies ? 1 : 0; body.gdpr_consent = consent.tcString || ""; }
    if (gpp) { body.gpp = gpp.gppString; body.gpp_sid = gpp.sid; }
    var payload = JSON.stringify(body);
    if (!firstSent && !unloading && w.fetch) {
      // The first answer carries the visitor cookie: hold later batches until it is in.
      // It also names the visitor; it is read (CORS, text/plain: no preflight) only when the
      // page has asked for the id, as reading it from an origin the stack does not allow
      // fails, and the batch then goes again by beacon (stored once: same event ids).
      firstSent = inFlight = true;
      var done = function () { inFlight = false; flush(); };
      var again = function () { queue = batch.concat(queue); done(); learnVisitorId(null); };
      try {
        w.fetch(base + "/collect", { method: "POST", mode: visitorIdCallbacks.length ? "cors" : "no-cors",
                                     credentials: "include", keepalive: true,
                                     headers: { "Content-Type": "text/plain" }, body: payload })
          .then(function (response) {
            // 5xx: not stored (the answer says to send them again); the beacon retries them once.
            if (response.status >= 500) { again(); return; }
            done();
            answered(response);
          }, again);
        return;
      } catch (e) { firstSent = inFlight = false; }
    }
    var first = !firstSent;
    firstSent = true;
    beacon(payload, batch);
    if (first) learnVisitorId(null);  // a beacon's answer cannot be read: the id stays the server's
  }

  function flush() {
    timer = null;
    if (!tcfReady || !gppReady || !queue.length) return;
    if (inFlight && !unloading) { schedule(); return; }
    while (queue.length) {
      send(queue.splice(0, MAX_BATCH));
      if (inFlight && !unloading) return;  // the rest follows the first answer
    }
  }

  function schedule() { if (!timer) timer = setTimeout(flush, 200); }

  function track(name, props) {
    queue.push({ e: String(name || "page_view"), url: String(w.location.href).slice(0, 2048),
                 ref: String(d.referrer || "").slice(0, 2048), eid: id(), props: cleanProps(props) });
    schedule();
  }

  if (w.__tcfapi) {
    try {
      w.__tcfapi("addEventListener", 2, function (tcData, ok) {
        if (!ok || !tcData) return;
        if (tcData.eventStatus === "tcloaded" || tcData.eventStatus === "useractioncomplete" || tcData.gdprApplies === false) {
          consent = { gdprApplies: !!tcData.gdprApplies, tcString: tcData.tcString };
          tcfReady = true;
          flush();
        }
      });
    } catch (e) { tcfReady = true; }
  }

  // A GPP 1.0 CMP has no signal status: it is ready once its status is "loaded", and
  // answers its string to "getGPPData" (returned, or passed to the callback).
  function gpp10Data() {
    var data = null;
    try {
      var returned = w.__gpp("getGPPData", function (answer, ok) { if (ok && answer) data = answer; });
      if (!data && returned && typeof returned === "object") data = returned;
    } catch (e) {}
    return data || {};
  }

  if (w.__gpp) {
    try {
      // Every event carries the CMP's pingData. Under GPP 1.1 its string is final once
      // the signal status is "ready" (a stub or a CMP still loading registers us "not
      // ready" and later fires "signalStatus" with "ready"); applicableSections [-1]
      // means none.
      w.__gpp("addEventListener", function (gppEvent, ok) {
        if (!ok || !gppEvent) return;
        var ping = gppEvent.pingData || {};
        var v10 = ping.signalStatus === undefined && ping.cmpStatus !== undefined && gppEvent.eventName !== "signalStatus";
        var ready = v10 ? ping.cmpStatus === "loaded"
          : (gppEvent.eventName === "signalStatus" && gppEvent.data === "ready") || ping.signalStatus === "ready";
        if (!ready) return;
        var data = v10 ? gpp10Data() : ping;
        var sections = data.applicableSections;
        gpp = { gppString: String(data.gppString || ""), sid: sections && sections.join ? sections.join(",") : "" };
        gppReady = true;
        flush();
      });
    } catch (e) { gppReady = true; }
  }

  function leaving() { unloading = true; flush(); }
  w.addEventListener("pagehide", leaving);
  d.addEventListener("visibilitychange", function () {
    if (d.visibilityState === "hidden") leaving(); else unloading = false;
  });
  function run(command) {
    if (typeof command !== "function") return;
    try { command(); } catch (e) { setTimeout(function () { throw e; }, 0); }
  }

  var waiting = w.dmp && w.dmp.que && w.dmp.que.length ? w.dmp.que : [];
  w.dmp = { _loaded: true, track: track, flush: flush, getVisitorId: getVisitorId,
            que: { push: function () { for (var i = 0; i < arguments.length; i++) run(arguments[i]); } } };
  track("page_view", {});
  for (var i = 0; i < waiting.length; i++) run(waiting[i]);
})(window, document);
