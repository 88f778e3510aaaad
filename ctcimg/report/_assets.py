"""Inline CSS and JavaScript of the review report (kept in Python so they ship with the wheel).

The script reads the JSON payload in ``<script id="ctcimg-data">``, builds the CTC gallery
(canvases drawn only when scrolled into view), renders rejected groups only when their
section is opened, and implements reviewer mode: select a cell, set 0-3 or "not a CTC",
export a corrections CSV that ``ctcimg calibrate`` reads.
"""

CSS = r"""
:root { --tile: 72px; --c0: #7f8c9a; --c1: #e0b23a; --c2: #e07b2a; --c3: #c2312f; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d232a; background: #f4f5f7; }
header.top { background: #1f2a36; color: #fff; padding: 14px 24px; }
header.top h1 { margin: 0; font-size: 20px; font-weight: 600; }
header.top .sub { color: #b8c4d0; font-size: 13px; margin-top: 2px; }
main { padding: 12px 24px 80px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; align-items: stretch; }
.panel { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; }
.panel h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #5b6673;
            margin: 0 0 6px; }
.big { font-size: 30px; font-weight: 700; }
table.t { border-collapse: collapse; }
table.t td, table.t th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
table.t th { font-weight: 600; color: #5b6673; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
        font-weight: 600; color: #fff; }
.pill.positive { background: #c2312f; } .pill.negative { background: #2f7d4f; }
.pill.not_evaluable { background: #7f8c9a; }
.headline td { font-weight: 700; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 5px; vertical-align: middle; }
details.params summary { cursor: pointer; color: #44505c; }
details.params pre { max-height: 360px; overflow: auto; background: #f7f8fa; padding: 8px;
                     font-size: 12px; }
.histogram text { font-size: 11px; fill: #44505c; }
.histogram .bin-label { font-size: 13px; font-weight: 700; }
#toolbar { position: sticky; top: 0; z-index: 5; background: #fffbe8;
           border-bottom: 1px solid #e8d98f; padding: 6px 24px; display: flex; flex-wrap: wrap;
           gap: 8px 16px; align-items: center;
           font-size: 13px; }
#toolbar button { font: inherit; padding: 2px 9px; border: 1px solid #b9c0c8; border-radius: 4px;
                  background: #fff; cursor: pointer; }
#toolbar button:hover { background: #eef2f6; }
#toolbar button.primary { background: #1f6feb; color: #fff; border-color: #1f6feb; }
#toolbar .keys { color: #6b7580; }
kbd { border: 1px solid #c4cad1; border-bottom-width: 2px; border-radius: 3px; padding: 0 4px;
      font-size: 11px; background: #fff; }
section.bin { margin-top: 18px; scroll-margin-top: 90px; }
.cell, details.rejected, details.reason { scroll-margin-top: 90px; }
section.bin > h2 { font-size: 16px; margin: 0 0 4px; display: flex; align-items: center; gap: 8px; }
.legend { color: #5b6673; font-size: 12px; margin-bottom: 6px; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; }
.cell { background: #fff; border: 2px solid #dde1e6; border-radius: 5px; padding: 4px;
        cursor: pointer; position: relative; outline: none; }
.cell canvas { display: block; width: calc(var(--tile) * 5 + 8px); height: var(--tile);
               background: #000; border-radius: 2px; }
.cell .meta { font-size: 11px; color: #44505c; margin-top: 3px; white-space: nowrap;
              font-variant-numeric: tabular-nums; }
.cell .meta b { color: #1d232a; }
.cell.selected { border-color: #1f6feb; box-shadow: 0 0 0 3px rgba(31, 111, 235, .35); }
.cell .badge { position: absolute; top: -9px; right: -6px; font-size: 11px; font-weight: 700;
               padding: 0 6px; border-radius: 8px; color: #fff; display: none;
               border: 2px solid #fff; z-index: 1; }
.cell.reviewed .badge { display: block; }
.cell.agree .badge { background: #2f7d4f; }
.cell.changed .badge { background: #1f6feb; }
.cell.notctc .badge { background: #222; }
.cell.notctc canvas { opacity: .45; }
.cell.changed { border-color: #8fb4f5; } .cell.agree { border-color: #9fd0b0; }
.cell.selected { border-color: #1f6feb; }
.b0 { background: var(--c0); } .b1 { background: var(--c1); }
.b2 { background: var(--c2); } .b3 { background: var(--c3); }
details.rejected { margin-top: 24px; }
details.rejected > summary { font-size: 16px; font-weight: 600; cursor: pointer; }
details.reason { margin: 8px 0 0 12px; }
details.reason > summary { cursor: pointer; }
details.reason .desc { color: #5b6673; }
button.more { margin-top: 8px; font: inherit; }
.empty { color: #7f8c9a; font-style: italic; }
"""

JS = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("ctcimg-data").textContent);
  const F = {}; D.fields.forEach((name, i) => { F[name] = i; });
  const TILE = D.thumb_px, UP = 2, GAP = 2 * UP;          // canvas: 2x upsampled tiles
  const W = 5 * TILE * UP + 4 * GAP, H = TILE * UP;
  const ch = name => D.channels.indexOf(name);
  const iDAPI = ch("DAPI"), iCK = ch("CK"), iCD45 = ch("CD45");
  const tileOrder = ["DAPI", "CK", "CD45", "HER2"].map(ch);
  const byId = new Map();
  const order = [];          // event ids in on-page order (for keyboard navigation)
  const storeKey = "ctcimg-review/" + D.cartridge_id + "/" + D.digest;
  let corrections = {};
  try { corrections = JSON.parse(localStorage.getItem(storeKey) || "{}") || {}; }
  catch (e) { corrections = {}; }
  let selected = null;

  function label(score) { return score === "not_ctc" ? "not CTC" : D.bins[+score]; }

  // ---- drawing ------------------------------------------------------------------------
  const scratch = document.createElement("canvas");
  scratch.width = 4 * TILE; scratch.height = TILE;
  const sctx = scratch.getContext("2d", { willReadFrequently: true });

  function draw(canvas, row) {
    const img = new Image();
    img.onload = function () {
      sctx.clearRect(0, 0, scratch.width, scratch.height);
      sctx.drawImage(img, 0, 0);
      const src = sctx.getImageData(0, 0, 4 * TILE, TILE).data;
      const tiles = document.createElement("canvas");
      tiles.width = 5 * TILE; tiles.height = TILE;
      const tctx = tiles.getContext("2d");
      const out = tctx.createImageData(5 * TILE, TILE);
      const o = out.data;
      for (let y = 0; y < TILE; y++) {
        for (let x = 0; x < TILE; x++) {
          const v = k => src[(y * 4 * TILE + k * TILE + x) * 4];
          for (let t = 0; t < 4; t++) {
            const g = v(tileOrder[t]), p = (y * 5 * TILE + t * TILE + x) * 4;
            o[p] = o[p + 1] = o[p + 2] = g; o[p + 3] = 255;
          }
          const p = (y * 5 * TILE + 4 * TILE + x) * 4;
          o[p] = v(iCD45); o[p + 1] = v(iCK); o[p + 2] = v(iDAPI); o[p + 3] = 255;
        }
      }
      tctx.putImageData(out, 0, 0);
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
      for (let t = 0; t < 5; t++) {
        ctx.drawImage(tiles, t * TILE, 0, TILE, TILE, t * (TILE * UP + GAP), 0, TILE * UP, H);
      }
      // scale bar on the overlay tile
      const bar = D.scale_bar_um / D.pixel_um * UP, x1 = W - 6, y = H - 7;
      ctx.fillStyle = "#fff"; ctx.fillRect(x1 - bar, y, bar, 3);
      ctx.font = "bold 11px system-ui, sans-serif"; ctx.textAlign = "right";
      ctx.fillText(D.scale_bar_um + " \u00b5m", x1, y - 3);
      ctx.textAlign = "left"; ctx.fillStyle = "rgba(255,255,255,.85)";
      ["DAPI", "CK", "CD45", "HER2", "merge"].forEach((name, t) => {
        ctx.fillText(name, t * (TILE * UP + GAP) + 4, 13);
      });
    };
    img.src = "data:" + D.mime + ";base64," + row[F.img];
  }

  const observer = "IntersectionObserver" in window ? new IntersectionObserver(entries => {
    for (const e of entries) {
      if (e.isIntersecting) {
        observer.unobserve(e.target);
        const id = +e.target.parentNode.dataset.id;
        draw(e.target, byId.get(id));
      }
    }
  }, { rootMargin: "600px" }) : null;

  // ---- cards --------------------------------------------------------------------------
  function fmt(v, digits) { return v === null ? "n/a" : (+v).toFixed(digits); }

  function card(row) {
    const id = row[F.id];
    byId.set(id, row); order.push(id);
    const el = document.createElement("div");
    el.className = "cell"; el.dataset.id = id; el.tabIndex = -1;
    const c = document.createElement("canvas");
    c.width = W; c.height = H;
    el.appendChild(c);
    const meta = document.createElement("div");
    meta.className = "meta";
    const engine = row[F.score] === "" ? row[F.reason] : "HER2 " + row[F.score];
    meta.innerHTML = "<b>#" + id + "</b> \u00b7 frame " + row[F.frame] + " \u00b7 (" +
      fmt(row[F.x_um], 1) + ", " + fmt(row[F.y_um], 1) + ") \u00b5m \u00b7 signal <b>" +
      fmt(row[F.signal], 1) + "</b> \u00b7 " + engine +
      (row[F.probability] === null ? "" : " \u00b7 p(CTC) " + fmt(row[F.probability], 2));
    el.title = "event " + id + ": click to select, then 0-3 or x";
    el.appendChild(meta);
    const badge = document.createElement("span");
    badge.className = "badge"; el.appendChild(badge);
    if (row[F.img] === null) { meta.innerHTML += " \u00b7 (no thumbnail)"; }
    else if (observer) { observer.observe(c); } else { draw(c, row); }
    paint(el);
    return el;
  }

  function paint(el) {
    const id = +el.dataset.id, row = byId.get(id), fix = corrections[id];
    el.classList.remove("reviewed", "agree", "changed", "notctc");
    const badge = el.querySelector(".badge");
    if (fix === undefined) return;
    el.classList.add("reviewed");
    const engine = row[F.score] === "" ? null : String(D.bins.indexOf(row[F.score]));
    if (fix === "not_ctc") {
      el.classList.add(engine === null ? "agree" : "notctc");
      badge.textContent = "not CTC";
    } else if (fix === engine) {
      el.classList.add("agree"); badge.textContent = "\u2713 " + label(fix);
    } else {
      el.classList.add("changed"); badge.textContent = "\u2192 " + label(fix);
    }
  }

  function fill(container, rows, limit) {
    const frag = document.createDocumentFragment();
    const start = container.querySelectorAll(".cell").length;
    const end = Math.min(rows.length, start + limit);
    for (let i = start; i < end; i++) {
      frag.appendChild(card(rows[i]));
    }
    const old = container.querySelector("button.more");
    if (old) old.remove();
    container.appendChild(frag);
    const shown = container.querySelectorAll(".cell").length;
    if (shown < rows.length) {
      const more = document.createElement("button");
      more.className = "more";
      more.textContent = "show " + Math.min(limit, rows.length - shown) + " more of " +
        (rows.length - shown);
      more.onclick = ev => { ev.stopPropagation(); fill(container, rows, limit); };
      container.appendChild(more);
    }
  }

  // CTC galleries: every CTC gets a card now; its canvas is drawn when scrolled into view
  document.querySelectorAll(".gallery[data-bin]").forEach(g => {
    const rows = D.ctcs.filter(r => r[F.score] === g.dataset.bin);
    if (rows.length) fill(g, rows, rows.length);
    else g.innerHTML = '<span class="empty">no CTCs in this bin</span>';
  });
  // rejected groups: built only when opened, in pages
  document.querySelectorAll("details.reason[data-reason]").forEach(d => {
    d.addEventListener("toggle", () => {
      const g = d.querySelector(".gallery");
      if (d.open && !g.dataset.built) {
        g.dataset.built = "1";
        fill(g, D.rejected[d.dataset.reason] || [], D.page_size);
      }
    });
  });

  // ---- reviewer mode ------------------------------------------------------------------
  const status = document.getElementById("review-status");
  const selInfo = document.getElementById("review-selected");

  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(corrections)); } catch (e) { /* */ }
    const n = Object.keys(corrections).length;
    const changed = Object.keys(corrections).filter(id => {
      const row = byId.get(+id), eng = row && row[F.score] !== "" ?
        String(D.bins.indexOf(row[F.score])) : "not_ctc";
      return corrections[id] !== eng;
    }).length;
    status.textContent = n + " reviewed, " + changed + " changed";
  }

  function select(el) {
    if (selected) selected.classList.remove("selected");
    selected = el;
    if (!el) { selInfo.textContent = "none (click a cell)"; return; }
    el.classList.add("selected");
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "nearest" });
    const row = byId.get(+el.dataset.id);
    selInfo.textContent = "#" + row[F.id] + " (" + (row[F.score] === "" ?
      row[F.reason] : "HER2 " + row[F.score]) + ")";
  }

  function setScore(value) {
    if (!selected) return;
    const id = +selected.dataset.id;
    if (value === null) delete corrections[id]; else corrections[id] = value;
    paint(selected); save();
    if (value !== null) step(1);
  }

  function step(delta) {
    const cells = Array.from(document.querySelectorAll(".cell"))
      .filter(c => c.offsetParent !== null);
    if (!cells.length) return;
    const i = selected ? cells.indexOf(selected) : -1;
    const j = Math.max(0, Math.min(cells.length - 1, i + delta));
    select(cells[j]);
  }

  document.addEventListener("click", ev => {
    const el = ev.target.closest(".cell");
    if (el) select(el);
  });
  document.addEventListener("keydown", ev => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    const k = ev.key;
    if (k >= "0" && k <= "3") { setScore(k); ev.preventDefault(); }
    else if (k === "x" || k === "X") { setScore("not_ctc"); ev.preventDefault(); }
    else if (k === "Backspace" || k === "Delete" || k === "u") {
      setScore(null); ev.preventDefault();
    }
    else if (k === "ArrowRight" || k === "j") { step(1); ev.preventDefault(); }
    else if (k === "ArrowLeft" || k === "k") { step(-1); ev.preventDefault(); }
    else if (k === "Escape") { select(null); }
  });
  document.querySelectorAll("#toolbar [data-score]").forEach(b => {
    b.addEventListener("click", () => {
      const v = b.dataset.score; setScore(v === "clear" ? null : v);
    });
  });

  function csvCell(v) {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function correctionsCsv(scope) {
    const cols = ["event_id", "frame", "x_px", "y_px", "x_um", "y_um", "her2_signal",
      "her2_score", "is_ctc", "reject_reason", "reviewer_score", "reviewed"];
    const lines = [cols.join(",")];
    const rows = D.ctcs.slice();
    Object.values(D.rejected).forEach(g => g.forEach(r => {
      if (corrections[r[F.id]] !== undefined) rows.push(r);
    }));
    rows.sort((a, b) => a[F.id] - b[F.id]);
    for (const r of rows) {
      const fix = corrections[r[F.id]];
      const isCtc = r[F.score] !== "";
      if (fix === undefined && (scope === "reviewed" || !isCtc)) continue;
      const score = fix !== undefined ? fix : String(D.bins.indexOf(r[F.score]));
      lines.push([r[F.id], r[F.frame], r[F.x_px], r[F.y_px], r[F.x_um], r[F.y_um],
        r[F.signal], r[F.score], isCtc ? "True" : "False", r[F.reason], score,
        fix !== undefined ? "yes" : "no"].map(csvCell).join(","));
    }
    return lines.join("\n") + "\n";
  }

  document.getElementById("export").addEventListener("click", () => {
    const scope = document.querySelector("input[name=scope]:checked").value;
    const blob = new Blob([correctionsCsv(scope)], { type: "text/csv" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = D.cartridge_id + "_corrections.csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  });
  document.getElementById("reset").addEventListener("click", () => {
    if (!Object.keys(corrections).length || confirm("Forget every correction on this page?")) {
      corrections = {}; document.querySelectorAll(".cell").forEach(paint); save();
    }
  });
  document.getElementById("zoom").addEventListener("change", ev => {
    document.documentElement.style.setProperty("--tile", ev.target.value + "px");
  });

  window.ctcimgReview = { corrections: () => corrections, csv: correctionsCsv };
  save(); select(null);
  document.body.dataset.ready = "1";
})();
"""
