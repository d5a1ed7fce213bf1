// The centre console's few lines of script (no framework, no other origin).
// Tables with class "sortable" sort by a clicked header; an input with data-filter=ID
// hides the rows of table ID that do not contain its text; #live shows the server-sent
// feed of new entries.
"use strict";

function cellKey(row, i) {
  const cell = row.cells[i];
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const n = Number(raw);
  return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
}

function makeSortable(table) {
  table.querySelectorAll("thead th").forEach((th, i) => {
    th.classList.add("sort");
    th.addEventListener("click", () => {
      const body = table.tBodies[0];
      const up = th.dataset.dir !== "up";
      table.querySelectorAll("thead th").forEach((h) => delete h.dataset.dir);
      th.dataset.dir = up ? "up" : "down";
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellKey(a, i), y = cellKey(b, i);
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      body.append(...rows);
    });
  });
}

function makeFilter(input) {
  const table = document.getElementById(input.dataset.filter);
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of table.tBodies[0].rows) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every((w) => text.includes(w));
    }
  });
}

function cell(tr, text, cls) {
  const td = tr.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function startFeed(table) {
  const state = document.getElementById("live-state");
  const source = new EventSource(table.dataset.feed);
  source.onopen = () => { state.textContent = state.dataset.on; state.className = "on"; };
  source.onerror = () => { state.textContent = state.dataset.off; state.className = "off"; };
  source.onmessage = (ev) => {
    const e = JSON.parse(ev.data);
    const tr = table.tBodies[0].insertRow(0);
    tr.dataset.key = e.site + "/" + e.gate + "/" + e.seq;
    tr.dataset.received = e.received;
    cell(tr, e.time);
    cell(tr, e.site);
    cell(tr, e.gate);
    cell(tr, e.sub);
    const granted = e.granted === true;
    cell(tr, e.granted === null ? "–" : (granted ? table.dataset.granted : table.dataset.denied),
         e.granted === null ? "" : (granted ? "on" : "off"));
    cell(tr, e.reason, "reason");
    cell(tr, e.kind);
    while (table.tBodies[0].rows.length > 200) table.tBodies[0].deleteRow(-1);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  document.querySelectorAll("input[data-filter]").forEach(makeFilter);
  const live = document.getElementById("live");
  if (live) startFeed(live);
});
