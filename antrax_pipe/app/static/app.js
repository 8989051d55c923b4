// extract-trainset page: all state that must survive a reload lives in the URL hash (list, movie, filter, seed,
// tracklet, label, zoom) and, for a bare URL, in localStorage; marks and exports are on disk (the server owns them).
"use strict";

const MARK_NAMES = { correct: "correct", wrong: "wrong", ambig: "should not have an ID", falseneg: "is an ant",
                     trueneg: "not an ant" };
const MARK_KEYS = { c: "correct", w: "wrong", a: "ambig", i: "falseneg", o: "trueneg" };
const SOURCE_NAMES = { random: "", review_plan: "review plan: ", label_next: "label next: ",
                       stale: "re-check: " };
const $ = (id) => document.getElementById(id);

const S = {
  info: null, source: "random", movie: "", autoid: "", seed: 0, label: "", zoom: 0, preset: false, pool: [],
  classified: false, pos: 0, cur: null, frames: null, selected: new Set(), anchor: null, token: 0, busy: false,
  cache: new Map(), restore: null,
};

// ---------------------------------------------------------------------------------------------------------- helpers

async function api(path, params, body) {
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    url += "?" + q.toString();
  }
  const opt = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(url, opt);
  let j;
  try { j = await r.json(); } catch (e) { j = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j;
}

function status(msg, kind) {
  const f = $("status");
  f.textContent = msg;
  f.className = kind || "";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function storageKey() { return `antrax-extract-trainset:${S.info.expdir}:${S.info.session}`; }

function saveState() {
  const t = S.pool[S.pos];
  const q = new URLSearchParams({ src: S.source, m: S.movie, f: S.autoid, seed: S.seed, i: S.pos, l: S.label,
                                  z: S.zoom });
  if (t) q.set("t", t.tracklet);
  const hash = "#" + q.toString();
  history.replaceState(null, "", hash);
  try {
    localStorage.setItem(storageKey(), hash);
    localStorage.setItem(storageKey() + ":preset", S.preset ? "1" : "");
  } catch (e) { /* private mode: the URL still holds it */ }
}

function loadState() {
  let hash = location.hash;
  if (hash.length < 2) { try { hash = localStorage.getItem(storageKey()) || ""; } catch (e) { hash = ""; } }
  let preset = false;
  try { preset = !!localStorage.getItem(storageKey() + ":preset"); } catch (e) { preset = false; }
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  return { src: q.get("src") || "random", m: q.get("m"), f: q.get("f") || "", seed: q.get("seed"),
           i: parseInt(q.get("i") || "0", 10) || 0, t: q.get("t"), l: q.get("l") || "",
           z: parseFloat(q.get("z") || "0") || 0, preset };
}

// ------------------------------------------------------------------------------------------------------------ setup

async function init() {
  try {
    S.info = await api("/api/info");
  } catch (e) { status("cannot reach the server: " + e.message, "error"); return; }
  $("expname").textContent = `${S.info.expname} · ${S.info.session}`;
  $("annotator").textContent = `annotator: ${S.info.annotator}`;
  document.title = `extract-trainset · ${S.info.expname}`;
  if (S.info.frame_warning) { $("warning").textContent = S.info.frame_warning; $("warning").hidden = false; }
  const st = loadState();
  const movies = S.info.movies.map((m) => String(m.movie));
  S.movie = movies.includes(st.m) || st.m === "all" ? st.m : movies[0];
  S.autoid = st.f;
  S.seed = st.seed !== null && /^\d+$/.test(st.seed) ? parseInt(st.seed, 10) : S.info.seed;
  S.restore = st.t ? { t: st.t, l: S.info.labels.some((x) => x.label === st.l) ? st.l : "" } : null;
  S.zoom = st.z;
  S.preset = st.preset;
  $("presetlabel").checked = S.preset;
  $("presetlabel").addEventListener("change", () => {
    S.preset = $("presetlabel").checked; saveState(); $("presetlabel").blur(); // keys work on at once
  });
  const ssel = $("source");
  for (const o of ssel.options) {
    if (o.value in S.info.lists && !S.info.lists[o.value]) { o.disabled = true; o.textContent += " — not written yet"; }
  }
  S.source = [...ssel.options].some((o) => o.value === st.src && !o.disabled) ? st.src : "random";
  ssel.value = S.source;
  ssel.addEventListener("change", () => { S.source = ssel.value; reloadPool(null, 0); });
  const msel = $("movie");
  for (const m of S.info.movies)
    msel.append(el("option", { value: String(m.movie) },
      `movie ${m.movie}${m.classified ? "" : " (not classified)"}${m.parted ? " (parted)" : ""}`));
  if (S.info.movies.length > 1) msel.append(el("option", { value: "all" }, "all movies"));
  msel.value = S.movie;
  msel.addEventListener("change", () => { S.movie = msel.value; S.autoid = ""; reloadPool(null, 0); });
  $("autoid").addEventListener("change", () => { S.autoid = $("autoid").value; reloadPool(null, 0); });
  $("shuffle").addEventListener("click", () => { S.seed = Math.floor(Math.random() * 2 ** 31); reloadPool(null, 0); });
  buildLabels();
  $("back").addEventListener("click", () => go(-1));
  $("next").addEventListener("click", () => go(1));
  $("exportall").addEventListener("click", () => exportFrames(null));
  $("exportsel").addEventListener("click", () => exportFrames([...S.selected].sort((a, b) => a - b)));
  $("confirmexport").addEventListener("click", () => confirmExport());
  $("undo").addEventListener("click", () => undoExport());
  $("showall").addEventListener("click", () => loadRange(0, S.frames ? S.frames.n : 0));
  for (const b of document.querySelectorAll("#validate button[data-mark]"))
    b.addEventListener("click", () => mark(b.dataset.mark));
  $("unmark").addEventListener("click", () => mark(null));
  $("labelsearch").addEventListener("keydown", labelSearchKey);
  document.addEventListener("keydown", onKey);
  await reloadPool(st.t, st.i);
}

function buildLabels() {
  const box = $("labels");
  box.textContent = "";
  S.info.labels.forEach((x, k) => {
    const b = el("button", { type: "button", class: `cat-${x.category}`, title: x.category, "data-label": x.label },
      x.label);
    if (k < 10) b.append(" ", el("kbd", {}, String((k + 1) % 10)));
    b.addEventListener("click", () => chooseLabel(x.label));
    box.append(b);
  });
  chooseLabel("", true);
}

function chooseLabel(label, quiet) {
  S.label = label;
  for (const b of $("labels").querySelectorAll("button")) b.classList.toggle("chosen", b.dataset.label === label);
  $("exportall").disabled = !label;
  updateSelection();
  if (!quiet) { status(`label: ${label}`); saveState(); }
}

// The export label belongs to one tracklet: a new tracklet starts without one (or with its autoID, if asked for);
// a reload of the same tracklet keeps the label chosen before.
function labelForNewTracklet(info) {
  if (S.restore && S.restore.t === info.tracklet) { chooseLabel(S.restore.l, true); S.restore = null; return; }
  S.restore = null;
  const preset = S.preset && S.info.labels.some((x) => x.label === info.autoID) ? info.autoID : "";
  chooseLabel(preset, true);
}

function labelSearchKey(ev) {
  if (ev.key === "Enter") {
    const v = ev.target.value.trim().toLowerCase();
    const hit = S.info.labels.find((x) => x.label.toLowerCase() === v) ||
                S.info.labels.find((x) => x.label.toLowerCase().startsWith(v));
    if (hit && v) { chooseLabel(hit.label); ev.target.value = ""; ev.target.blur(); }
    else status(`no label matches ${JSON.stringify(ev.target.value)}`, "error");
    ev.preventDefault();
  } else if (ev.key === "Escape") { ev.target.blur(); }
}

// ------------------------------------------------------------------------------------------------------------- pool

async function reloadPool(tracklet, pos) {
  document.body.dataset.state = "loading";
  let p;
  try {
    p = await api("/api/pool", { movie: S.movie, autoid: S.autoid, seed: S.seed, source: S.source });
  } catch (e) {
    status(e.message, "error");
    if (S.source !== "random") { S.source = "random"; $("source").value = "random"; return reloadPool(null, 0); }
    document.body.dataset.state = "error"; return;
  }
  S.pool = p.tracklets;
  S.classified = p.classified;
  S.cache.clear();
  const listed = S.source !== "random";
  const fsel = $("autoid");
  fsel.textContent = "";
  fsel.append(el("option", { value: "" }, "all"));
  if (S.autoid) fsel.append(el("option", { value: S.autoid }, S.autoid));
  else for (const a of p.autoids_present) fsel.append(el("option", { value: a }, a));
  fsel.value = S.autoid;
  fsel.disabled = !p.classified || listed;
  $("movie").disabled = listed;
  $("shuffle").disabled = listed;
  let i = tracklet ? S.pool.findIndex((r) => r.tracklet === tracklet) : -1;
  if (i < 0) i = Math.min(Math.max(pos || 0, 0), Math.max(S.pool.length - 1, 0));
  S.pos = i;
  if (p.skipped.length) status(`${p.skipped.length} tracklet(s) left out, e.g. ${p.skipped[0].error}`, "error");
  await show();
  refreshStats();
}

function go(step) {
  if (!S.pool.length) return;
  const i = S.pos + step;
  if (i < 0) { status("this is the first tracklet"); return; }
  if (i >= S.pool.length) { status("end of the list: no more tracklets here (choose another list, movie or filter)"); return; }
  S.pos = i;
  show();
}

// ------------------------------------------------------------------------------------------------- one tracklet

function stepFor(n) { return n > S.info.max_frames_shown ? Math.ceil(n / S.info.max_frames_shown) : 1; }

function loadFrames(r) {
  const step = stepFor(r.n);
  const key = `${r.movie}/${r.tracklet}/${step}`;
  if (!S.cache.has(key)) {
    const p = api("/api/frames", { movie: r.movie, tracklet: r.tracklet, step: step > 1 ? step : "" });
    p.catch(() => S.cache.delete(key));
    S.cache.set(key, p);
    if (S.cache.size > 6) S.cache.delete(S.cache.keys().next().value);
  }
  return S.cache.get(key);
}

async function show() {
  const token = ++S.token;
  if (!S.restore) chooseLabel("", true); // the label of the tracklet before must not carry over
  saveState();
  const where = SOURCE_NAMES[S.source] || "";
  $("position").textContent = S.pool.length ? `${where}tracklet ${S.pos + 1} of ${S.pool.length}`
                                            : `${where}no tracklets`;
  S.selected.clear();
  S.anchor = null;
  if (!S.pool.length) {
    S.cur = null; S.frames = null;
    $("info").textContent = S.source === "stale" ? "no changed tracklet to re-check: every mark is current"
      : S.autoid ? `no tracklet with autoID ${S.autoid} here` : "no tracklets in this list";
    $("frames").textContent = "";
    $("framebar").hidden = true;
    $("viewer").dataset.tracklet = "";
    updateButtons();
    document.body.dataset.state = "ready";
    return;
  }
  document.body.dataset.state = "loading";
  const r = S.pool[S.pos];
  let info, frames;
  try {
    [info, frames] = await Promise.all([api("/api/tracklet", { movie: r.movie, tracklet: r.tracklet }), loadFrames(r)]);
  } catch (e) {
    if (token !== S.token) return;
    status(`${r.tracklet}: ${e.message}`, "error");
    document.body.dataset.state = "ready";
    return;
  }
  if (token !== S.token) return;
  S.cur = info;
  S.frames = { n: frames.n, height: frames.height, width: frames.width, probs: frames.probs,
               byI: new Map(frames.frames.map((f) => [f.i, f])) };
  labelForNewTracklet(info);
  renderInfo();
  renderFrames();
  updateButtons();
  $("viewer").dataset.tracklet = info.tracklet;
  document.body.dataset.state = "ready";
  saveState();
  const nxt = S.pool[S.pos + 1];
  if (nxt) loadFrames(nxt); // prefetch: the next tracklet is usually wanted next
}

function fmtScore(s) { return s === null || s === undefined ? "" : ` · score ${Number(s).toFixed(2)}`; }

function renderInfo() {
  const c = S.cur;
  const lines = [`movie ${c.movie} · ${c.tracklet}  (${c.file})`];
  let fr = `${c.n} image${c.n === 1 ? "" : "s"}`;
  if (c.movie_frames) fr += ` · movie frames ${c.movie_frames[0]}–${c.movie_frames[1]}`;
  if (c.frames && c.frame_mode === "absolute") fr += ` (exported as experiment frames ${c.frames[0]}–${c.frames[1]})`;
  lines.push(fr);
  if (c.classified) {
    let best = "";
    if (c.best_frame) best = c.best_movie_frame ? ` · best frame ${c.best_movie_frame} (image ${c.best_frame})`
                                                : ` · best image ${c.best_frame}`;
    lines.push(`autoID ${c.autoID || "(none)"}${fmtScore(c.score)}${best}`);
  } else lines.push("autoID: movie not classified (no labels/autoids file)");
  const exp = Object.entries(c.exported).map(([k, v]) => `${k} (${v})`).join(", ");
  let mk = c.mark ? MARK_NAMES[c.mark] + (c.marked_by ? ` by ${c.marked_by}` : "") : "—";
  if (c.stale) mk += ` · STALE, re-check: ${c.stale_reason}`;
  lines.push(`mark: ${mk} · exported: ${exp || "—"}`);
  if (c.others && c.others.length)
    lines.push("also marked by " + c.others.map((o) => `${o.annotator || "(no name)"}: ${MARK_NAMES[o.mark]}` +
                                                      (o.stale ? " (stale)" : "")).join(", "));
  $("info").textContent = lines.join("\n");
  $("viewer").dataset.stale = c.stale ? "1" : "";
}

function figureFor(fr) {
  const f = S.frames;
  const img = el("img", { src: "data:image/png;base64," + fr.png, width: Math.round(f.width * S.zoom),
                          height: Math.round(f.height * S.zoom), alt: `image ${fr.i + 1}` });
  const num = fr.movie_frame !== null && fr.movie_frame !== undefined ? fr.movie_frame : fr.frame;
  let title = `frame ${num} (image ${fr.i + 1} of ${f.n})`;
  if (fr.top2) title += "\n" + fr.top2.map(([c, p]) => `${c} ${(100 * p).toFixed(1)} %`).join(" · ");
  const fig = el("figure", { "data-i": String(fr.i), title }, img,
                 el("figcaption", {}, String(num), el("small", {}, `#${fr.i + 1}`)));
  if (S.cur.best_frame && fr.i === S.cur.best_frame - 1) fig.classList.add("best");
  if (fr.disagree) fig.classList.add("disagree");
  fig.addEventListener("click", (ev) => toggleFrame(fr.i, ev.shiftKey));
  return fig;
}

function renderFrames() {
  const box = $("frames");
  const top = box.scrollTop;
  box.textContent = "";
  const f = S.frames;
  if (!S.zoom) S.zoom = Math.max(1, Math.min(4, Math.round(96 / Math.max(f.height, f.width) * 2) / 2));
  const shown = [...f.byI.keys()].sort((a, b) => a - b);
  shown.forEach((i, k) => {
    box.append(figureFor(f.byI.get(i)));
    const j = k + 1 < shown.length ? shown[k + 1] : f.n;
    if (j > i + 1) {
      const gap = el("button", { type: "button", class: "gap", title: `load images ${i + 2}–${j}` }, `+${j - i - 1}`);
      gap.addEventListener("click", () => loadRange(i + 1, j));
      box.append(gap);
    }
  });
  const bar = $("framebar");
  bar.hidden = shown.length >= f.n;
  $("framebartext").textContent = `long tracklet: showing ${shown.length} of ${f.n} images (at first every ` +
    `${stepFor(f.n)}-th); click +k between two images to load the ones in between`;
  box.scrollTop = top;
  updateSelection();
}

async function loadRange(start, stop) {
  if (!S.cur || !S.frames || stop <= start) return;
  const c = S.cur;
  try {
    const r = await api("/api/frames", { movie: c.movie, tracklet: c.tracklet, start, stop });
    if (S.cur !== c) return;
    for (const fr of r.frames) S.frames.byI.set(fr.i, fr);
    renderFrames();
  } catch (e) { status(e.message, "error"); }
}

function setZoom(factor) {
  S.zoom = Math.max(0.5, Math.min(8, S.zoom * factor));
  if (S.frames) {
    for (const img of $("frames").querySelectorAll("img")) {
      img.width = Math.round(S.frames.width * S.zoom); img.height = Math.round(S.frames.height * S.zoom);
    }
  }
  saveState();
}

function toggleFrame(i, range) {
  if (range && S.anchor !== null) {
    const [a, b] = [Math.min(S.anchor, i), Math.max(S.anchor, i)];
    for (let k = a; k <= b; k++) if (S.frames.byI.has(k)) S.selected.add(k);
  } else if (S.selected.has(i)) S.selected.delete(i);
  else S.selected.add(i);
  S.anchor = i;
  updateSelection();
}

function updateSelection() {
  for (const fig of $("frames").querySelectorAll("figure"))
    fig.classList.toggle("selected", S.selected.has(parseInt(fig.dataset.i, 10)));
  $("nsel").textContent = String(S.selected.size);
  $("exportsel").disabled = !S.label || S.selected.size === 0;
}

function updateButtons() {
  const allowed = new Set(S.cur ? S.cur.allowed_marks : []);
  for (const b of document.querySelectorAll("#validate button[data-mark]")) {
    b.disabled = !allowed.has(b.dataset.mark);
    b.classList.toggle("marked", !!S.cur && S.cur.mark === b.dataset.mark);
    b.classList.toggle("stale", !!S.cur && S.cur.mark === b.dataset.mark && S.cur.stale);
  }
  $("unmark").disabled = !(S.cur && S.cur.mark);
  $("confirmexport").disabled = !(S.cur && allowed.size && S.info.labels.some((x) => x.label === S.cur.autoID));
  $("back").disabled = S.pos <= 0;
  $("next").disabled = S.pos >= S.pool.length - 1;
  let hint = "";
  if (S.cur && !S.cur.classified) hint = "This movie is not classified: nothing to validate.";
  else if (S.cur && !allowed.size) hint = `autoID ${S.cur.autoID || "(none)"} is neither an ID nor a non-ant label.`;
  else if (S.cur && S.cur.stale) hint = "Your mark judged an earlier classification: mark the tracklet again.";
  $("validatehint").textContent = hint;
}

function setUndo(can) { $("undo").disabled = !can; }

// ------------------------------------------------------------------------------------------------------ actions

async function exportFrames(frames) {
  if (!S.cur || S.busy) return;
  if (!S.label) { status("choose a label first (digits, / or click)", "error"); return; }
  if (frames && !frames.length) { status("no frame selected (click images to select them)", "error"); return; }
  S.busy = true;
  const c = S.cur;
  try {
    const r = await api("/api/export", null, { movie: c.movie, tracklet: c.tracklet, label: S.label, frames });
    c.exported = r.exported;
    renderInfo();
    setUndo(r.can_undo);
    S.selected.clear(); updateSelection();
    status(`exported ${r.written.length} image(s) of ${c.tracklet} to examples/${r.label}/` +
           (r.skipped.length ? ` (${r.skipped.length} already there)` : "") + (r.written.length ? " · z undoes" : ""),
           "ok");
    if (frames === null && !S.classified) { S.busy = false; go(1); } // as anTraX: export all on an unclassified experiment advances
  } catch (e) {
    status(e.message, "error");
  } finally { S.busy = false; }
}

function updatePoolMark(c, m, stale) {
  const row = S.pool.find((x) => x.tracklet === c.tracklet && x.movie === c.movie);
  if (row) { row.mark = m; row.stale = stale; }
}

async function confirmExport() {
  if (!S.cur || S.busy) return;
  const c = S.cur;
  if ($("confirmexport").disabled) {
    status(`autoID ${c.autoID || "(none)"} cannot be confirmed and exported as itself`, "error"); return;
  }
  S.busy = true;
  try {
    const r = await api("/api/correct_export", null, { movie: c.movie, tracklet: c.tracklet });
    c.exported = r.exported; c.mark = r.mark; c.stale = false; c.marked_by = S.info.annotator;
    updatePoolMark(c, r.mark, false);
    setUndo(r.can_undo);
    status(`${c.tracklet}: ${MARK_NAMES[r.mark]} + exported ${r.written.length} image(s) to examples/${r.label}/` +
           (r.skipped.length ? ` (${r.skipped.length} already there)` : "") + " · z undoes", "ok");
    refreshStats();
    if (S.pos < S.pool.length - 1) { S.busy = false; go(1); } else { renderInfo(); updateButtons(); }
  } catch (e) {
    status(e.message, "error");
  } finally { S.busy = false; }
}

async function undoExport() {
  if (S.busy) return;
  S.busy = true;
  try {
    const r = await api("/api/undo_export", null, {});
    setUndo(r.can_undo);
    status(`undone: removed ${r.removed.length} image(s) of ${r.tracklet} from examples/${r.label}/` +
           (r.kept.length ? ` (${r.kept.length} changed since, kept)` : "") +
           (r.mark !== null ? ` · mark back to ${r.mark ? MARK_NAMES[r.mark] : "none"}` : ""), "ok");
    const row = S.pool.find((x) => x.tracklet === r.tracklet && x.movie === r.movie);
    if (row && r.mark !== null) row.mark = r.mark;
    if (S.cur && S.cur.tracklet === r.tracklet && S.cur.movie === r.movie) {
      const info = await api("/api/tracklet", { movie: r.movie, tracklet: r.tracklet });
      if (S.cur && S.cur.tracklet === info.tracklet) { S.cur = info; renderInfo(); updateButtons(); }
    }
    refreshStats();
  } catch (e) {
    status(e.message, "error");
  } finally { S.busy = false; }
}

async function mark(m) {
  if (!S.cur || S.busy) return;
  if (m !== null && !S.cur.allowed_marks.includes(m)) {
    status(S.cur.classified ? `"${MARK_NAMES[m]}" does not apply to autoID ${S.cur.autoID || "(none)"}`
                            : "this movie is not classified: nothing to validate", "error");
    return;
  }
  S.busy = true;
  const c = S.cur;
  try {
    const r = await api("/api/mark", null, { movie: c.movie, tracklet: c.tracklet, mark: m });
    c.mark = r.mark; c.stale = false; c.marked_by = r.mark ? S.info.annotator : "";
    updatePoolMark(c, r.mark, false);
    status(m ? `${c.tracklet}: ${MARK_NAMES[m]} (saved)` : `${c.tracklet}: mark removed`, "ok");
    refreshStats();
    if (m !== null && S.pos < S.pool.length - 1) { S.busy = false; go(1); }
    else { renderInfo(); updateButtons(); }
  } catch (e) {
    status(e.message, "error");
  } finally { S.busy = false; }
}

function pct(r) { return r.value === null ? "n/a" : `${(100 * r.value).toFixed(1)}%`; }

function statsTable(rows) {
  const t = el("table", {});
  for (const [k, v, cls] of rows) {
    const td = el("td", {}, v);
    if (cls) td.className = cls;
    t.append(el("tr", {}, el("td", {}, k), td));
  }
  return t;
}

function renderPlan(plan) {
  const box = $("planstats");
  $("plan").hidden = !plan;
  box.textContent = "";
  if (!plan) return;
  const names = { error: "error (wrong ID)", false_positive: "false positive", assignment: "assignment",
                  false_negative: "false negative" };
  const rows = [["judged", `${plan.judged} of ${plan.planned} planned tracklets` +
                           (plan.strata !== null ? ` · ${plan.strata} strata` : "")]];
  for (const [k, name] of Object.entries(names)) rows.push([name, plan.estimates[k].text]);
  const t = statsTable(rows);
  [...t.rows].slice(1).forEach((tr, k) => { tr.title = plan.estimates[Object.keys(names)[k]].definition; });
  box.append(t);
  box.append(el("p", { class: "hint" }, "Plan weights applied; exact 95 % Clopper–Pearson intervals. Judge the " +
                                        "plan in its order (List: review plan) so the estimate stays random."));
  box.dataset.judged = String(plan.judged);
}

async function refreshStats() {
  let s;
  try { s = await api("/api/stats", { movie: S.movie, autoid: S.autoid }); }
  catch (e) { $("stats").textContent = e.message; return; }
  const p = s.pool;
  const rows = [
    ["checked", `${s.checked.tracklets} tracklets · ${s.checked.frames} frames`],
    ["marks", `correct ${s.counts.correct} · wrong ${s.counts.wrong} · no ID ${s.counts.ambig} · ` +
              `is ant ${s.counts.falseneg} · not ant ${s.counts.trueneg}`],
    ["wrong ID", `${pct(s.wrong_id.tracklets)} of tracklets · ${pct(s.wrong_id.frames)} of frames`],
    ["false pos.", `${pct(s.false_positive.tracklets)} · ${pct(s.false_positive.frames)} frames`],
    ["false neg.", `${pct(s.false_negative.tracklets)} · ${pct(s.false_negative.frames)} frames`],
    ["assigned (list)", p.tracklets ? `${(100 * p.assigned_tracklets / p.tracklets).toFixed(1)}% of ${p.tracklets} ` +
              `tracklets · ${(100 * p.assigned_frames / Math.max(p.frames, 1)).toFixed(1)}% of frames` : "n/a"],
  ];
  const t = statsTable(rows);
  const staleCell = el("td", { class: s.stale ? "stale" : "" }, s.stale ? `${s.stale} tracklet(s) to re-check ` : "none");
  if (s.stale) {
    const b = el("button", { type: "button", class: "link" }, "open the list");
    b.addEventListener("click", () => { S.source = "stale"; $("source").value = "stale"; reloadPool(null, 0); });
    staleCell.append(b);
  }
  t.append(el("tr", {}, el("td", {}, "stale marks"), staleCell));
  for (const c of s.classifiers) {
    t.append(el("tr", {}, el("td", { class: "sub" }, `classifier ${c.short}${c.current ? " (now)" : ""}`),
                el("td", {}, `${c.tracklets} tracklets marked · wrong ID ${pct(c.wrong_id.tracklets)}`)));
  }
  t.title = `${s.wrong_id.tracklets.text}\nmarks are saved in ${s.file} (annotator ${s.annotator})`;
  const box = $("stats");
  box.textContent = "";
  box.append(t);
  box.dataset.checked = String(s.checked.tracklets);
  box.dataset.stale = String(s.stale);
  renderPlan(s.plan);
  setUndo(s.can_undo);
}

function onKey(ev) {
  const tag = (ev.target.tagName || "").toLowerCase();
  if ((tag === "input" && ev.target.type !== "checkbox") || tag === "select" || tag === "textarea") return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  let done = true;
  if (k === "n" || k === "ArrowRight") go(1);
  else if (k === "b" || k === "ArrowLeft") go(-1);
  else if (ev.repeat) done = false; // holding a key must not export or mark many times
  else if (k === "e") exportFrames(null);
  else if (k === "s") exportFrames([...S.selected].sort((a, b) => a - b));
  else if (k === "x") confirmExport();
  else if (k === "z") undoExport();
  else if (k in MARK_KEYS) mark(MARK_KEYS[k]);
  else if (k === "u") mark(null);
  else if (/^[0-9]$/.test(k)) {
    const idx = (parseInt(k, 10) + 9) % 10;
    if (idx < S.info.labels.length) chooseLabel(S.info.labels[idx].label);
  } else if (k === "/") $("labelsearch").focus();
  else if (k === "+" || k === "=") setZoom(1.25);
  else if (k === "-") setZoom(0.8);
  else if (k === "Escape") { S.selected.clear(); S.anchor = null; updateSelection(); }
  else done = false;
  if (done) ev.preventDefault();
}

init();
