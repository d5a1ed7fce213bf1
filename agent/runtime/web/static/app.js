// The installer page: served by the gate itself (no CDN), no inline script (CSP).
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function rows(body, pairs) {
  body.replaceChildren(...pairs.map(([k, v, cls]) => {
    const tr = el("tr");
    tr.append(el("td", k), el("td", v, cls));
    return tr;
  }));
}

function csrf() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  return [res, data];
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const INPUT_NAMES = {
  contact: "门磁 Door contact", exit: "出门按钮 Exit button",
  tamper: "防拆 Tamper", fire: "消防 Fire input",
};

function showStatus(s) {
  const inputs = s.inputs || {};
  const names = Object.keys(inputs);
  rows(document.getElementById("inputs-body"), names.length ? names.map((k) => [
    INPUT_NAMES[k] || k, inputs[k] ? "激活 active" : "空闲 idle", inputs[k] ? "warn" : "",
  ]) : [["-", "未配置输入 no inputs configured"]]);
  const rev = s.revocations || {};
  const clock = s.clock || {};
  const last = (s.last_decisions || [])[0];
  rows(document.getElementById("status-body"), [
    ["门 Door", `${s.door} (${s.mode})`],
    ["时钟 Clock", clock.trusted ? `可信 trusted (${clock.clock || "ok"})`
      : `不可信 not trusted (${clock.clock || "?"})`, clock.trusted ? "pass" : "fail"],
    ["黑名单 Revocation list", rev.version === null || rev.version === undefined
      ? "未安装 none installed" : `v${rev.version}, ${age(rev.age_s)}`, rev.stale ? "fail" : ""],
    ["待上传 Outbox backlog", String(s.backlog ?? "-")],
    ["服务器 Broker", s.broker || "-", s.broker === "connected" ? "pass" : ""],
    ["最近扫码 Last scan", last ? `${last.granted ? "通过 granted" : "拒绝 denied"}: ` +
      `${last.reason} ${last.ts}` : "-", last ? (last.granted ? "pass" : "fail") : ""],
  ]);
  const p = s.preview;
  const codes = document.getElementById("codes");
  const note = document.getElementById("preview-note");
  if (!p) {
    note.textContent = "无摄像头预览（串口扫码器）No camera preview: the scanner is serial.";
    codes.textContent = "";
    return;
  }
  note.textContent = `变化检测 change gate: ${p.gate || "-"}` +
    (p.decode_ms !== null && p.decode_ms !== undefined ? `, 解码 decode ${p.decode_ms} ms` : "");
  codes.replaceChildren(...(p.codes || []).map((c) => {
    const size = c.module_px ? `${c.module_px} px/module` : "module size unknown";
    const line = el("div", `${c.text} — ${size}`, c.too_small ? "warn" : "pass");
    if (c.too_small) {
      line.append(el("div", "请把摄像头移近（每模块少于 4 像素）Move the camera closer: " +
        "under 4 pixels per module", "warn"));
    }
    return line;
  }));
  if (!(p.codes || []).length) codes.textContent = "未见二维码 no code in view";
}

async function refresh() {
  try {
    const res = await fetch("/api/status", { credentials: "same-origin" });
    if (res.status === 401) { window.location = "/login"; return; }
    showStatus(await res.json());
  } catch (e) { /* the gate restarts: try again */ }
}

async function runChecks() {
  const body = document.getElementById("checks-body");
  rows(body, [["…", "检查中 checking"]]);
  const res = await fetch("/api/checklist", { credentials: "same-origin" });
  const data = await res.json();
  body.replaceChildren(...data.checks.map((c) => {
    const tr = el("tr");
    const detail = el("td", c.detail);
    if (c.hint && c.status !== "pass") detail.append(el("div", "→ " + c.hint, "hint"));
    tr.append(el("td", c.check), el("td", c.status.toUpperCase(), c.status), detail);
    return tr;
  }));
}

async function relayTest() {
  const out = document.getElementById("relay-result");
  const seconds = document.body.dataset.unlockS;
  if (!window.confirm(`门将打开 ${seconds} 秒，并记录在日志中。继续？\n` +
      `The door will release for ${seconds} s (recorded). Continue?`)) {
    out.textContent = "已取消 cancelled";
    return;
  }
  out.textContent = "…";
  const [res, data] = await post("/api/relay-test", { confirm: true });
  out.textContent = res.ok ? "已发出一次脉冲 One pulse sent, recorded in the entry log."
    : `失败 failed: ${data.error || res.status}`;
  out.className = res.ok ? "pass" : "fail";
  refresh();
}

function main() {
  const form = document.getElementById("login");
  if (form) {
    // The QR code's URL carries the token after "#": never sent to the server in a URL.
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (match) {
      history.replaceState(null, "", "/login");
      document.getElementById("token").value = decodeURIComponent(match[1]);
      form.submit();
    }
    return;
  }
  document.getElementById("relay-test").addEventListener("click", relayTest);
  document.getElementById("run-checks").addEventListener("click", runChecks);
  document.getElementById("logout").addEventListener("click", async () => {
    await post("/logout");
    window.location = "/login";
  });
  refresh();
  setInterval(refresh, 1000);
}

document.addEventListener("DOMContentLoaded", main);
