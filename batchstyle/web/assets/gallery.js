/* batchstyle gallery (OUTDIR/index.html): every image of a batch with its inputs, settings, time and
   worker; failures with their errors; sorting, filters, a full-size viewer. A clip is one entry: its
   viewer plays the video beside the content clip and steps through the frames. Its data are scripts in
   .batchstyle/gallery/ (a page opened from disk cannot fetch files). Served by `batchstyle run --web`,
   the page also shows the running batch (.live/state), updating without reloading.
   Plain JavaScript, no framework, nothing loaded from elsewhere. */
"use strict";
(function () {
  var L = window.BatchstyleLive;
  var G = window.batchstyleGallery = window.batchstyleGallery || { shards: {} };
  var DATA = ".batchstyle/gallery/", PAGE_SIZE = 60, POLL_MS = 1000, RETRY_MS = 3000;
  var entries = [], view = [], page = 0;
  var filters = { state: "", style: "", line: "", text: "", sort: "plan" };
  var loaded = {};            /* shard number -> version on screen */
  var summaryVersion = null;  /* live: the data version on screen */
  var live = null, running = {}, runningClips = {}, liveCards = {};
  var cardCache = {};
  var viewer = { index: -1, opener: null, clip: null, frame: 0 };

  function $(id) { return document.getElementById(id); }
  var el = L.el;

  /* A relative file path as a URL (each segment encoded: names are data, never markup or schemes). */
  function fileUrl(path) { return path.split("/").map(encodeURIComponent).join("/"); }
  function thumbUrl(name) { return ((G.summary && G.summary.thumbs) || ".batchstyle/thumbs/") + encodeURIComponent(name); }
  function time(epoch) {
    if (!L.isNum(epoch) || !epoch) return "";
    var d = new Date(epoch * 1000), now = new Date();
    var hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toDateString() === now.toDateString() ? hm : d.toLocaleDateString() + " " + hm;
  }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

  /* ---- data ---------------------------------------------------------------------------------- */

  function loadScript(src, done) {
    var script = document.createElement("script");
    script.src = src;
    script.onload = function () { script.remove(); done(true); };
    script.onerror = function () { script.remove(); done(false); };
    document.head.appendChild(script);
  }

  /* Load the shards whose version differs from the one on screen, then call done. */
  function loadShards(versions, done) {
    var wanted = [];
    versions.forEach(function (v, k) { if (loaded[k] !== v) wanted.push(k); });
    var left = wanted.length;
    if (!left) { done(false); return; }
    wanted.forEach(function (k) {
      var v = versions[k];
      loadScript(DATA + "shard-" + String(k).padStart(5, "0") + ".js?v=" + v, function (ok) {
        if (ok) loaded[k] = v;
        if (--left === 0) done(true);
      });
    });
  }

  function collect() {
    var n = (G.summary && G.summary.shards) ? G.summary.shards.length : 0;
    entries = [];
    for (var k = 0; k < n; k++) entries = entries.concat(G.shards[k] || []);
    fillOptions();
  }

  /* A running frame of a clip: the clip's entry is running (its frames folder is the frame's folder). */
  function runningOf(e) { return running[e.id] || (e.clip && runningClips[e.clip]) || null; }
  function stateOf(e) { return (e.state === "pending" || e.state === "partial") && runningOf(e) ? "running" : e.state; }
  function viewable(e) { return !!e.thumb && (e.clip ? true : stateOf(e) === "done"); }

  /* ---- filters and order ------------------------------------------------------------------------ */

  function fillOptions() {
    var styles = {}, lines = {};
    entries.forEach(function (e) {
      e.styles.forEach(function (s) { styles[s.name] = (styles[s.name] || 0) + 1; });
      lines[e.line] = (lines[e.line] || 0) + 1;
    });
    setOptions($("f-style"), "every style", Object.keys(styles).sort().map(function (name) {
      return [name, name + " (" + styles[name] + ")"];
    }), filters.style);
    setOptions($("f-line"), "every line", Object.keys(lines).sort(function (a, b) { return a - b; }).map(function (line) {
      return [line, "line " + line + " (" + plural(lines[line], "image") + ")"];
    }), filters.line);
  }

  function setOptions(select, allText, options, current) {
    var key = JSON.stringify(options);
    if (select.dataset.key === key) return;
    select.dataset.key = key;
    select.replaceChildren(new Option(allText, ""));
    options.forEach(function (o) { select.appendChild(new Option(o[1], o[0])); });
    select.value = current;
  }

  function matches(e) {
    if (filters.state && stateOf(e) !== filters.state && !(filters.state === "pending" && stateOf(e) === "partial")) return false;
    if (filters.line && String(e.line) !== filters.line) return false;
    if (filters.style && !e.styles.some(function (s) { return s.name === filters.style; })) return false;
    if (filters.text) {
      var t = filters.text.toLowerCase();
      if (e.output.toLowerCase().indexOf(t) < 0 && e.content.toLowerCase().indexOf(t) < 0) return false;
    }
    return true;
  }

  var ORDERS = {
    plan: function (a, b) { return a.n - b.n; },
    newest: function (a, b) { return (b.finished || b.failed || 0) - (a.finished || a.failed || 0) || a.n - b.n; },
    slowest: function (a, b) { return (b.seconds || 0) - (a.seconds || 0) || a.n - b.n; },
    name: function (a, b) { return a.output.localeCompare(b.output) || a.n - b.n; }
  };

  function readHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    Object.keys(filters).forEach(function (k) { if (params.has(k)) filters[k] = params.get(k); });
    if (!ORDERS[filters.sort]) filters.sort = "plan";
    page = Math.max(0, (parseInt(params.get("page"), 10) || 1) - 1);
    $("f-state").value = filters.state; $("f-text").value = filters.text; $("f-sort").value = filters.sort;
  }

  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(filters).forEach(function (k) { if (filters[k] && !(k === "sort" && filters[k] === "plan")) params.set(k, filters[k]); });
    if (page) params.set("page", page + 1);
    var hash = params.toString();
    if (location.hash.slice(1) !== hash) history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function bindControls() {
    [["f-state", "state"], ["f-style", "style"], ["f-line", "line"], ["f-sort", "sort"], ["f-text", "text"]].forEach(function (pair) {
      $(pair[0]).addEventListener(pair[0] === "f-text" ? "input" : "change", function (ev) {
        filters[pair[1]] = ev.target.value;
        page = 0;
        render();
      });
    });
    $("controls").addEventListener("submit", function (ev) { ev.preventDefault(); });
  }

  /* ---- drawing ------------------------------------------------------------------------------------ */

  function render() {
    view = entries.filter(matches).sort(ORDERS[filters.sort]);
    var pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    var first = page * PAGE_SIZE, shown = view.slice(first, first + PAGE_SIZE);
    $("grid").replaceChildren.apply($("grid"), shown.map(card));
    $("shown").textContent = view.length === entries.length
      ? (entries.length ? "Showing " + (first + 1) + "–" + (first + shown.length) + " of " + what(entries) : "No images in this batch.")
      : (view.length ? "Showing " + (first + 1) + "–" + (first + shown.length) + " of " + view.length + " matching (of " + entries.length + ")"
                     : "No image matches these filters.");
    drawPages(pages);
    drawCounts();
    writeHash();
  }

  function drawPages(pages) {
    var nav = $("pages");
    if (pages <= 1) { nav.replaceChildren(); return; }
    var prev = el("button", "", "Previous"), next = el("button", "", "Next");
    prev.type = next.type = "button";
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
    prev.onclick = function () { page -= 1; render(); $("grid").scrollIntoView(); };
    next.onclick = function () { page += 1; render(); $("grid").scrollIntoView(); };
    nav.replaceChildren(prev, el("span", "", "Page " + (page + 1) + " of " + pages), next);
  }

  /* "8 images", or with clips "1 image and 2 clips" */
  function what(list) {
    var clips = list.filter(function (e) { return e.clip; }).length;
    return clips ? plural(list.length - clips, "image") + " and " + plural(clips, "clip") : plural(list.length, "image");
  }

  function drawCounts() {
    var summary = G.summary || {}, c = { done: 0, failed: 0, pending: 0 };
    entries.forEach(function (e) { var s = e.state === "partial" ? "pending" : e.state; c[s] = (c[s] || 0) + 1; });
    if (live) return;  /* the live panel says more */
    var text = what(entries) + ": " + c.done + " done · " + c.failed + " failed · " + c.pending + " not done yet";
    if (L.isNum(summary.images_per_hour)) text += " · " + summary.images_per_hour.toFixed(1) + " images/hour";
    $("counts").textContent = text;
    var badge = $("state"), when = time(summary.updated);
    if (summary.state === "running") { badge.textContent = "In progress when written, " + when; badge.className = "badge running"; }
    else if (summary.state === "finished") { badge.textContent = "Finished " + when; badge.className = "badge finished"; }
    else if (summary.state === "stopped") {
      badge.textContent = c.pending ? "Stopped " + when + " with " + c.pending + " not done; run the same command again to go on"
                                    : "Ended " + when + " with " + c.failed + " failed; run the same command again to retry";
      badge.className = "badge failed";
    } else badge.textContent = "";
  }

  function card(e) {
    var state = stateOf(e), sig = state + JSON.stringify(e);
    var cached = cardCache[e.id];
    if (cached && cached.sig === sig) { patchRunning(cached.node, e); return cached.node; }
    var li = el("li", "card " + state);
    li.id = "item-" + e.id;
    li.dataset.state = state;
    if (e.clip) li.dataset.clip = e.clip;
    var pair = el("div", "pair");
    pair.appendChild(inputs(e));
    pair.appendChild(result(e, state));
    li.appendChild(pair);
    var title = el("h3", "", e.output);
    title.id = "title-" + e.id;
    li.setAttribute("aria-labelledby", title.id);
    li.appendChild(title);
    li.appendChild(el("p", "meta", meta(e, state)));
    var settings = Object.keys(e.settings || {}).map(function (k) { return k + " " + e.settings[k]; }).join(" · ");
    if (settings) li.appendChild(el("p", "settings", settings));
    if (state === "failed") failure(li, e);
    if (state === "running") li.appendChild(el("p", "running-text"));
    patchRunning(li, e);
    cardCache[e.id] = { sig: sig, node: li };
    return li;
  }

  /* The content, then each style; with masks, each style beside its mask, or the styles and then the
     one colour-coded segmentation, each style captioned with its colour. */
  function inputs(e) {
    var box = el("div", "inputs");
    var masks = e.masks || [], colors = e.mask_colors || [];
    var paired = masks.length === e.styles.length && !colors.length;
    box.appendChild(figure(e.content_thumb, "Content image: " + e.content, e.content));
    e.styles.forEach(function (s, k) {
      var share = e.styles.length > 1 ? " (" + Math.round(100 * s.weight) + "%)" : "";
      var fig = figure(s.thumb, "Style image: " + s.name, "style: " + s.name + share);
      if (colors[k]) fig.lastChild.prepend(swatch(colors[k]));
      if (!paired) { box.appendChild(fig); return; }
      var m = masks[k], row = el("div", "masked");
      row.appendChild(fig);
      row.appendChild(figure(m.thumb, "Mask image: " + m.name + ", where " + s.name + " applies", "mask: " + m.name));
      box.appendChild(row);
    });
    if (colors.length && masks.length) {
      var m = masks[0];
      box.appendChild(figure(m.thumb, "Mask image: " + m.name + ", one colour per style", "masks: " + m.name + " (" + colors.join(", ") + ")"));
    }
    return box;
  }

  /* A small square of a segmentation's colour (an invalid colour is ignored by the browser). */
  function swatch(color) {
    var box = el("span", "swatch");
    box.style.backgroundColor = color;
    box.setAttribute("aria-hidden", "true");
    return box;
  }

  function figure(thumb, alt, caption) {
    var fig = el("figure");
    if (thumb) {
      var img = el("img");
      img.src = thumbUrl(thumb);
      img.alt = alt;
      img.loading = "lazy";
      img.decoding = "async";
      fig.appendChild(img);
    }
    fig.appendChild(el("figcaption", "", caption));
    return fig;
  }

  function firstFrame(e) { return (e.frame_outputs || []).filter(function (f) { return f; })[0] || null; }

  function result(e, state) {
    if (e.clip && e.thumb) {
      var link = el("a", "result clip-result");
      link.href = fileUrl(e.video || firstFrame(e));
      link.setAttribute("aria-label", (e.video ? "Play the clip " : "Step through the frames of ") + e.output
                        + " (" + e.frames_done + " of " + plural(e.frames, "frame") + " done)");
      var still = el("img");
      still.src = thumbUrl(e.thumb);
      still.alt = "Result: " + e.output + ", its first frame";
      still.loading = "lazy";
      link.appendChild(still);
      link.appendChild(el("span", "clip-mark", (e.video ? "▶ " : "") + e.frames_done + "/" + e.frames + " frames"));
      link.addEventListener("click", function (ev) {
        if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        openViewer(e.id, link);
      });
      return link;
    }
    if (state === "done" && e.thumb) {
      var a = el("a", "result");
      a.href = fileUrl(e.output);
      a.setAttribute("aria-label", "Open " + e.output + " full size" + (e.size ? " (" + e.size[0] + "×" + e.size[1] + " px)" : ""));
      var img = el("img");
      img.src = thumbUrl(e.thumb);
      img.alt = "Result: " + e.output;
      img.loading = "lazy";
      img.decoding = "async";
      a.appendChild(img);
      a.addEventListener("click", function (ev) {
        if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        openViewer(e.id, a);
      });
      return a;
    }
    var words = { done: "Done (no thumbnail yet)", failed: "Failed", pending: "Not done yet", running: "Running…",
                  partial: "Some frames done (no thumbnail yet)" };
    var box = el("div", "result");
    box.appendChild(el("div", "placeholder", words[state] || state));
    return box;
  }

  function meta(e, state) {
    var parts = ["line " + e.line];
    if (e.clip) {
      parts.push("clip of " + plural(e.frames, "frame") + ": " + e.frames_done + " done");
      if (state === "done") parts.push(L.duration(e.seconds));
      else if (state === "failed") parts.push("failed " + time(e.failed) + (e.worker ? " on " + e.worker : ""));
      else if (e.frames_done === e.frames && !e.video) parts.push("its video is not written yet");
      else parts.push(state === "running" ? "running" : "not done yet");
      if (e.finished) parts.push("latest frame " + time(e.finished));
      return parts.join(" · ");
    }
    if (state === "done") {
      if (e.size) parts.push(e.size[0] + "×" + e.size[1] + " px");
      parts.push(L.duration(e.seconds) + (e.worker ? " on " + e.worker : ""));
      if (e.group > 1) parts.push("in a group of " + e.group);
      if (e.finished) parts.push("finished " + time(e.finished));
      if (e.attempts > 1) parts.push(plural(e.attempts, "attempt"));
    } else if (state === "failed") {
      parts.push("failed " + time(e.failed) + (e.worker ? " on " + e.worker : ""));
      parts.push(plural(e.attempts, "attempt"));
    } else parts.push(state === "running" ? "running" : "not done yet");
    return parts.join(" · ");
  }

  function failure(li, e) {
    li.appendChild(el("p", "error", (e.kind && e.kind !== "error" ? e.kind + ": " : "") + e.error));
    if (e.detail) {
      var details = el("details", "trace");
      details.appendChild(el("summary", "", "Details"));
      details.appendChild(el("pre", "", e.detail));
      li.appendChild(details);
    }
  }

  function patchRunning(li, e) {
    var node = li.querySelector(".running-text"), r = runningOf(e);
    if (!node || !r) return;
    var text = (L.isNum(r.scale) ? "scale " + r.scale + "/" + r.scales + " · iteration " + r.iteration + "/" + r.iterations : "starting")
      + " on " + r.worker;
    if (node.textContent !== text) node.textContent = text;
  }

  /* ---- full-size viewer ------------------------------------------------------------------------- */

  function openViewer(id, opener) {
    var dialog = $("viewer");
    viewer.opener = opener || viewer.opener;
    viewer.index = view.findIndex(function (e) { return e.id === id; });
    showInViewer(view[viewer.index]);
    if (!dialog.open) dialog.showModal();
  }

  function showInViewer(e) {
    var img = $("viewer-image"), info = $("viewer-info");
    $("viewer-title").textContent = e.output;
    img.hidden = !!e.clip;
    $("clip-view").hidden = !e.clip;
    if (e.clip) { showClip(e); return; }
    viewer.clip = null;
    img.onerror = function () {
      img.onerror = null;
      img.src = thumbUrl(e.thumb);
      info.prepend(el("span", "", "This browser cannot show this file; showing its thumbnail. "));
    };
    img.src = fileUrl(e.output);
    img.alt = "Result: " + e.output;
    var link = el("a", "", "Open the file");
    link.href = fileUrl(e.output);
    var styles = e.styles.map(function (s) { return s.name; }).join(" + ");
    info.replaceChildren(el("span", "", (e.size ? e.size[0] + "×" + e.size[1] + " px · " : "") + e.content + " in the style of " + styles + " · "), link);
    setNeighbours();
  }

  function doneNeighbours() {
    var prev = -1, next = -1, i;
    for (i = viewer.index - 1; i >= 0; i--) if (viewable(view[i])) { prev = i; break; }
    for (i = viewer.index + 1; i < view.length; i++) if (viewable(view[i])) { next = i; break; }
    return { prev: prev, next: next };
  }

  function setNeighbours() {
    var done = doneNeighbours();
    $("viewer-prev").disabled = done.prev < 0;
    $("viewer-next").disabled = done.next < 0;
  }

  /* A clip: its video (where written) beside the content clip (played where this page reaches it, else
     its first frame), and its frames one by one. */
  function showClip(e) {
    viewer.clip = e;
    var video = $("clip-video"), hasVideo = !!e.video;
    $("clip-result").hidden = !hasVideo;
    $("clip-video-note").textContent = "";
    if (hasVideo) {
      video.onerror = function () { $("clip-video-note").textContent = "This browser cannot play this video; its frames are below."; };
      video.src = fileUrl(e.video);
    } else video.removeAttribute("src");
    showContent(e);
    var first = (e.frame_outputs || []).findIndex(function (f) { return f; });
    showFrame(Math.max(0, first));
    var link = el("a", "", hasVideo ? "Open the video" : "Open the frames folder");
    link.href = fileUrl(hasVideo ? e.video : e.clip) + (hasVideo ? "" : "/");
    var styles = e.styles.map(function (s) { return s.name; }).join(" + ");
    $("viewer-info").replaceChildren(el("span", "", e.frames_done + " of " + plural(e.frames, "frame") + " done · "
                                        + e.content + " in the style of " + styles + " · "), link);
    setNeighbours();
  }

  function showContent(e) {
    var video = $("clip-content-video"), img = $("clip-content-image"), caption = $("clip-content-caption");
    var source = e.content_video || "", gif = /\.gif$/i.test(source);
    video.hidden = !source || gif;
    img.hidden = !!source && !gif;
    if (source && !gif) { video.src = fileUrl(source); img.removeAttribute("src"); }
    else {
      video.removeAttribute("src");
      if (source) img.src = fileUrl(source);
      else if (e.content_thumb) img.src = thumbUrl(e.content_thumb);
      else img.removeAttribute("src");
    }
    img.alt = "Content clip: " + e.content + (source ? "" : ", its first frame");
    caption.textContent = "Content: " + e.content + (source ? "" : /\.(mp4|mov|mkv|webm|gif)$/i.test(e.content)
      ? " (its first frame: the clip itself is outside this folder, out of this page's reach)"
      : " (its first frame)");
  }

  function showFrame(i) {
    var e = viewer.clip, frames = e.frame_outputs || [], path = frames[i], img = $("frame-image");
    viewer.frame = i;
    $("frame-label").textContent = "frame " + (i + 1) + " / " + e.frames + (path ? "" : " (not made yet)");
    img.hidden = !path;
    if (path) { img.src = fileUrl(path); img.alt = "Frame " + (i + 1) + " of " + e.output; }
    else img.removeAttribute("src");
    $("frame-prev").disabled = i <= 0;
    $("frame-next").disabled = i >= frames.length - 1;
  }

  function stepFrame(direction) {
    var i = viewer.frame + direction;
    if (viewer.clip && i >= 0 && i < (viewer.clip.frame_outputs || []).length) showFrame(i);
  }

  function step(direction) {
    var n = doneNeighbours(), target = direction < 0 ? n.prev : n.next;
    if (target < 0) return;
    viewer.index = target;
    showInViewer(view[target]);
  }

  function bindViewer() {
    var dialog = $("viewer");
    $("viewer-prev").onclick = function () { step(-1); };
    $("viewer-next").onclick = function () { step(1); };
    $("viewer-close").onclick = function () { dialog.close(); };
    $("frame-prev").onclick = function () { stepFrame(-1); };
    $("frame-next").onclick = function () { stepFrame(1); };
    dialog.addEventListener("keydown", function (ev) {
      if (ev.target.tagName === "VIDEO") return;  /* its own controls: the arrows seek */
      var move = viewer.clip ? stepFrame : step;  /* a clip's viewer: the arrows step through its frames */
      if (ev.key === "ArrowLeft") { ev.preventDefault(); move(-1); }
      else if (ev.key === "ArrowRight") { ev.preventDefault(); move(1); }
    });
    dialog.addEventListener("click", function (ev) { if (ev.target === dialog) dialog.close(); });
    dialog.addEventListener("close", function () {
      ["viewer-image", "clip-video", "clip-content-video", "clip-content-image", "frame-image"].forEach(function (id) {
        $(id).removeAttribute("src");
      });
      viewer.clip = null;
      if (viewer.opener && viewer.opener.isConnected) viewer.opener.focus();
    });
  }

  /* ---- the running batch (served by batchstyle run --web) ---------------------------------------- */

  function probeLive() {
    if (!/^https?:$/.test(location.protocol)) return;
    fetch(".live/state", { cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (st) { if (st && st.batchstyle === "live") { $("live").hidden = false; onLive(st); } })
      .catch(function () { /* a plain web server: the static gallery */ });
  }

  function poll() {
    fetch(".live/state", { cache: "no-store" })
      .then(function (resp) { if (!resp.ok) throw new Error("HTTP " + resp.status); return resp.json(); })
      .then(onLive)
      .catch(function () {
        if (live && live.finished) {
          $("overall").appendChild(el("p", "note", "The batch has finished and its live view has stopped. This page "
                                   + "stays as it is; index.html in the output folder shows the same gallery."));
          return;
        }
        $("state").textContent = "Lost the connection to the run";
        $("state").className = "badge lost";
        setTimeout(poll, RETRY_MS);
      });
  }

  function onLive(st) {
    live = st;
    drawLive(st);
    var wasRunning = Object.keys(running).sort().join(), now = {}, clips = {};
    st.workers.forEach(function (w) {
      w.items.forEach(function (it) {
        it.worker = w.label;
        now[it.id] = it;
        var slash = it.output.lastIndexOf("/");
        if (slash > 0) clips[it.output.slice(0, slash)] = it;  /* a frame: its clip's frames folder */
      });
    });
    running = now; runningClips = clips;
    var data = st.gallery || {};
    if (data.summary !== summaryVersion) {
      loadScript(DATA + "summary.js?v=" + data.summary, function () {
        summaryVersion = data.summary;
        loadShards((G.summary && G.summary.shards) || data.shards || [], function () { collect(); render(); });
      });
    } else if (Object.keys(running).sort().join() !== wasRunning) render();
    else Array.prototype.forEach.call($("grid").children, function (li) { patchRunning(li, { id: li.id.slice(5), clip: li.dataset.clip }); });
    /* once finished, poll slowly until the server stops (it stays a moment so that pages see the end) */
    setTimeout(poll, st.finished ? RETRY_MS : POLL_MS);
  }

  function drawLive(st) {
    var c = st.counts;
    var parts = [c.done + " of " + (c.total - c.skipped) + " done", c.failed + " failed", c.running + " running",
                 c.pending + " waiting"];
    if (c.skipped) parts.push(c.skipped + " done before");
    parts.push((L.isNum(st.images_per_hour) ? st.images_per_hour.toFixed(1) : "–") + " images/hour");
    parts.push("ETA " + L.duration(st.eta));
    parts.push("elapsed " + L.duration(st.elapsed));
    $("counts").textContent = parts.join(" · ");
    var word = st.draining ? "Finishing the running images" : "Running", cls = "running";
    if (st.finished) {
      word = c.pending + c.running > 0 ? "Stopped" : c.failed ? "Finished, " + c.failed + " failed" : "Finished";
      cls = c.pending + c.running > 0 || c.failed ? "failed" : "finished";
    }
    $("state").textContent = word;
    $("state").className = "badge " + cls;
    var overall = $("overall");
    if (!overall.bar) { overall.bar = new L.ProgressBar(overall, "progress of the batch"); overall.text = el("p", "muted"); overall.appendChild(overall.text); }
    overall.bar.set(st.progress);
    overall.text.textContent = st.message || "";
    drawWorkers(st);
  }

  function drawWorkers(st) {
    var seen = {}, idle = [];
    st.workers.forEach(function (w) {
      if (!w.items.length) idle.push(w.label + ": " + w.state);
      w.items.forEach(function (it) {
        seen[it.id] = true;
        var lc = liveCards[it.id] || (liveCards[it.id] = L.card($("workers"), { tag: "article", alt: "preview of " + it.output,
                                                                                   placeholder: "No preview yet." }));
        var shown = {};
        for (var k in it) shown[k] = it[k];
        shown.title = it.output;
        shown.subtitle = w.label + " · line " + it.line;
        shown.image = it.preview ? { url: ".live/preview/" + encodeURIComponent(it.id) + "?v=" + it.preview.version,
                                     version: it.preview.version, of_width: it.preview.of_width,
                                     of_height: it.preview.of_height } : null;
        lc.update(shown);
      });
    });
    Object.keys(liveCards).forEach(function (id) {
      if (!seen[id]) { liveCards[id].node.remove(); L.forget(liveCards[id]); delete liveCards[id]; }
    });
    $("idle-workers").replaceChildren.apply($("idle-workers"), idle.map(function (t) { return el("li", "", t); }));
    $("live-title").textContent = st.finished ? "The batch has finished" : "Running now";
  }

  /* ---- start --------------------------------------------------------------------------------------- */

  function start() {
    bindControls();
    bindViewer();
    readHash();
    if (G.summary && G.summary.title) {
      $("title").textContent = G.summary.title;
      document.title = G.summary.title + " · batchstyle gallery";
    }
    var versions = (G.summary && G.summary.shards) || [];
    loadShards(versions, function () { collect(); render(); });
    if (!versions.length) { collect(); render(); }
    probeLive();
  }

  if (document.body && document.body.dataset.page === "gallery") start();
})();
