/* batchstyle: how a running image's progress is drawn, for the single-image live view
   (batchstyle stylize --web) and for every running image of the batch dashboard.
   Plain JavaScript, no framework, nothing loaded from elsewhere. */
"use strict";
(function () {
  function isNum(x) { return typeof x === "number" && isFinite(x); }

  function duration(s) {
    if (!isNum(s) || s < 0) return "–";
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return h + "h" + (m < 10 ? "0" : "") + m + "m";
    if (m) return m + "m" + (sec < 10 ? "0" : "") + sec + "s";
    return sec + "s";
  }

  function clock(s) {
    if (!isNum(s)) return "";
    if (s < 60) return s.toFixed(1) + " s";
    s = Math.floor(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (h > 0 && m < 10 ? "0" : "") + m, ss = (sec < 10 ? "0" : "") + sec;
    return (h > 0 ? h + ":" : "") + mm + ":" + ss;
  }

  function memory(mb) { return mb >= 1024 ? (mb / 1024).toFixed(2) + " GiB" : Math.round(mb) + " MiB"; }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  /* Whole scales done plus the fraction of the current one, in [0, 1]. */
  function fraction(st) {
    if (st.done) return 1;
    var within = isNum(st.iteration) && isNum(st.iterations) && st.iterations > 0 ? st.iteration / st.iterations : 0;
    within = Math.min(1, Math.max(0, within));
    if (isNum(st.scale) && isNum(st.scales) && st.scales > 0) return Math.min(1, (st.scale - 1 + within) / st.scales);
    return within;
  }

  function progressLine(st) {
    var parts = [];
    if (isNum(st.scale)) parts.push("Scale " + st.scale + (isNum(st.scales) ? "/" + st.scales : ""));
    if (isNum(st.width) && isNum(st.height)) parts.push(st.width + "×" + st.height);
    if (isNum(st.iteration)) parts.push("iteration " + st.iteration + (isNum(st.iterations) ? "/" + st.iterations : ""));
    if (isNum(st.loss)) parts.push("loss " + st.loss.toPrecision(6));
    return parts.join(" · ");
  }

  function statsLine(st) {
    var parts = [];
    if (isNum(st.its_per_sec) && st.its_per_sec > 0)
      parts.push((st.its_per_sec < 10 ? st.its_per_sec.toFixed(2) : st.its_per_sec.toFixed(1)) + " it/s");
    if (isNum(st.elapsed)) parts.push("elapsed " + clock(st.elapsed));
    if (isNum(st.eta)) parts.push("ETA " + duration(st.eta));
    if (isNum(st.gpu_memory_mb) && st.gpu_memory_mb > 0) parts.push("peak GPU memory " + memory(st.gpu_memory_mb));
    return parts.join(" · ");
  }

  /* A bar with its percentage for assistive technology. */
  function ProgressBar(parent, label) {
    this.node = el("div", "bar");
    this.node.setAttribute("role", "progressbar");
    this.node.setAttribute("aria-label", label);
    this.node.setAttribute("aria-valuemin", "0");
    this.node.setAttribute("aria-valuemax", "100");
    this.fill = el("div", "bar-fill");
    this.node.appendChild(this.fill);
    parent.appendChild(this.node);
  }
  ProgressBar.prototype.set = function (frac) {
    var pct = (100 * Math.min(1, Math.max(0, frac || 0))).toFixed(1);
    this.fill.style.width = pct + "%";
    this.node.setAttribute("aria-valuenow", pct);
  };

  /* One running image: title, scale/iteration/loss, rates, a bar, and its picture drawn large and
     smoothly scaled, with its true pixel size stated. update(st) takes
     {title, subtitle, scale, scales, width, height, iteration, iterations, loss, its_per_sec, elapsed,
      eta, gpu_memory_mb, done, image: {url, version, of_width, of_height}}. */
  function ProgressCard(parent, options) {
    options = options || {};
    this.node = el(options.tag || "section", "progress-card");
    this.head = el("div", "pc-head");
    this.title = el(options.heading || "h3", "pc-title");
    this.subtitle = el("span", "pc-subtitle");
    this.head.appendChild(this.title);
    this.head.appendChild(this.subtitle);
    this.line = el("div", "pc-line");
    this.stats = el("div", "pc-stats");
    this.node.appendChild(this.head);
    this.node.appendChild(this.line);
    this.node.appendChild(this.stats);
    this.bar = new ProgressBar(this.node, options.barLabel || "progress of this image");
    this.frame = el("figure", "pc-frame");
    this.placeholder = el("div", "pc-placeholder", options.placeholder || "No image yet.");
    this.image = el("img", "pc-image");
    this.image.hidden = true;
    this.image.alt = options.alt || "the image as it forms";
    this.size = el("figcaption", "pc-size");
    this.note = el("div", "pc-note");
    this.frame.appendChild(this.placeholder);
    this.frame.appendChild(this.image);
    this.frame.appendChild(this.size);
    this.node.appendChild(this.frame);
    this.node.appendChild(this.note);
    this.shownVersion = null;
    this.loading = false;
    this.failedVersion = null;
    this.failedAt = 0;
    this.last = null;
    this.alt = this.image.alt;
    parent.appendChild(this.node);
  }

  ProgressCard.prototype.update = function (st) {
    this.last = st;
    if (typeof st.title === "string" && this.title.textContent !== st.title) this.title.textContent = st.title;
    var sub = typeof st.subtitle === "string" ? st.subtitle : "";
    if (this.subtitle.textContent !== sub) this.subtitle.textContent = sub;
    this.line.textContent = progressLine(st) || "\u00a0";
    this.stats.textContent = statsLine(st);
    this.stats.hidden = !this.stats.textContent;
    this.bar.set(fraction(st));
    if (st.image && st.image.url && st.image.version !== undefined && st.image.version !== null) this.load(st.image);
    this.describeSize();
  };

  /* Double-buffered: the next picture loads off-screen and replaces the shown one once complete. */
  ProgressCard.prototype.load = function (image) {
    var self = this, version = String(image.version);
    if (version === this.shownVersion || this.loading) return;
    if (version === this.failedVersion && Date.now() - this.failedAt < 3000) return;
    this.loading = true;
    var next = new Image();
    next.onload = function () {
      self.loading = false;
      next.className = "pc-image";
      next.alt = self.alt;
      self.image.replaceWith(next);
      self.image = next;
      self.placeholder.hidden = true;
      self.shownVersion = version;
      self.shownOf = image;
      self.note.textContent = "";
      self.describeSize();
      if (self.last && self.last.image) self.load(self.last.image);  /* a newer one may have arrived meanwhile */
    };
    next.onerror = function () {
      self.loading = false;
      self.failedVersion = version;
      self.failedAt = Date.now();
      self.note.textContent = "The latest image could not be loaded (" + image.url + ").";
    };
    next.src = image.url;
  };

  /* "181×136 px, shown 6.4× enlarged" or "preview 128×96 px of the 256×192 px image". */
  ProgressCard.prototype.describeSize = function () {
    var img = this.image;
    if (img.hidden || !img.naturalWidth) { this.size.textContent = ""; return; }
    var w = img.naturalWidth, h = img.naturalHeight, of = this.shownOf || {}, text;
    if (isNum(of.of_width) && isNum(of.of_height) && (of.of_width !== w || of.of_height !== h))
      text = "preview " + w + "×" + h + " px of the " + of.of_width + "×" + of.of_height + " px image";
    else text = w + "×" + h + " px";
    var shown = img.clientWidth && Math.min(img.clientWidth / w, img.clientHeight / h);
    if (shown && Math.abs(shown - 1) > 0.05)
      text += ", shown " + (shown >= 10 ? shown.toFixed(0) : shown.toFixed(1)) + "× " + (shown > 1 ? "enlarged" : "reduced");
    this.size.textContent = text;
    img.dataset.naturalWidth = w;
    img.dataset.naturalHeight = h;
  };

  window.addEventListener("resize", function () {
    cards.forEach(function (card) { if (card.node.isConnected) card.describeSize(); });
  });
  var cards = [];
  function card(parent, options) { var c = new ProgressCard(parent, options); cards.push(c); return c; }
  function forget(c) { var i = cards.indexOf(c); if (i >= 0) cards.splice(i, 1); }

  /* The single-image page (batchstyle stylize --web): polls status, shows one large card. */
  function stylizePage() {
    var POLL_MS = 500, RETRY_MS = 1500, STOPPED_NOTE = "The preview server has stopped.";
    var stateEl = document.getElementById("state"), noteEl = document.getElementById("note");
    var titleEl = document.getElementById("title");
    var view = card(document.getElementById("view"), { heading: "h2", barLabel: "progress of the run",
                                                        alt: "the current image" });
    var counter = 0, lastStatus = null;

    function setState(text, cls) {
      if (stateEl.textContent !== text) stateEl.textContent = text;
      stateEl.className = "badge " + (cls || "");
    }

    function render(status) {
      var started = isNum(status.iteration) || isNum(status.scale);
      if (status.done) setState("Finished", "finished");
      else if (!started) setState("Waiting for the first iteration…", "");
      else setState("Running", "running");
      if (typeof status.title === "string" && status.title) titleEl.textContent = status.title;
      var shown = {};
      for (var k in status) shown[k] = status[k];
      shown.title = "Current image";
      shown.subtitle = "";
      if (status.has_image && isNum(status.image_version)) {
        if (status.image_version !== view.wantVersion) {
          counter += 1; view.wantVersion = status.image_version; view.wantUrl = "image?t=" + counter;
        }
        shown.image = { url: view.wantUrl, version: status.image_version };
      }
      view.update(shown);
      var short = isNum(status.scale) ? status.scale + "/" + (isNum(status.scales) ? status.scales : "?") + " " : "";
      document.title = (status.done ? "Finished" : short + (isNum(status.iteration) ? "it " + status.iteration : "waiting"))
        + " · batchstyle";
    }

    function poll() {
      fetch("status", { cache: "no-store" })
        .then(function (resp) { if (!resp.ok) throw new Error("HTTP " + resp.status); return resp.json(); })
        .then(function (status) {
          lastStatus = status;
          if (noteEl.textContent === STOPPED_NOTE) noteEl.textContent = "";
          render(status);
          setTimeout(poll, POLL_MS);
        })
        .catch(function () {
          if (lastStatus && lastStatus.done) { setState("Finished", "finished"); noteEl.textContent = STOPPED_NOTE; }
          else setState("Lost the connection", "lost");
          setTimeout(poll, RETRY_MS);
        });
    }
    poll();
  }

  window.BatchstyleLive = { ProgressCard: ProgressCard, ProgressBar: ProgressBar, card: card, forget: forget,
                            duration: duration, clock: clock, fraction: fraction, el: el, isNum: isNum };
  document.addEventListener("DOMContentLoaded", function () {
    if (document.body && document.body.dataset.page === "stylize") stylizePage();
  });
})();
