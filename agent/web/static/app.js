// kubefabric read-only page: polls the agent's JSON endpoints and draws
// the fabric, the vPorts by node, services and the pod-to-pod graph.
// Plain DOM (textContent only: no HTML is ever built from data).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;

const view = {
  at: null,              // null = live, else Unix seconds
  windowSeconds: 3600,
  historyAvailable: false,
  historyReason: "",
  hostOfIp: new Map(),   // live vPort ip -> hostname, for the graph
  podOfIp: new Map(),
  timer: null,
  loaded: false,
};

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function cells(row, values, numeric) {
  values.forEach((v, i) => {
    const td = el("td", Array.isArray(v) ? v.join(", ") : (v === undefined || v === null ? "" : v));
    if (numeric && numeric.includes(i)) td.className = "num";
    row.appendChild(td);
  });
}

function fillTable(id, rows, toCells, numeric, emptyText) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", emptyText || "none", "muted");
    td.colSpan = $(id).querySelectorAll("th").length;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const r of rows) {
    const tr = el("tr");
    cells(tr, toCells(r), numeric);
    body.appendChild(tr);
  }
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const reason = body && body.error ? body.error : response.status + " " + response.statusText;
    throw new Error(reason);
  }
  return body;
}

function atQuery() { return view.at === null ? "" : "?at=" + encodeURIComponent(view.at.toFixed(3)); }

function fmtTime(t) { return new Date(t * 1000).toISOString().replace(".000Z", "Z"); }

function badgeClass(value) {
  if (["in-sync", "online", "connected", "established"].includes(value)) return "badge ok";
  if (["connecting", "remote", "disabled", "syn", "syn-ack"].includes(value)) return "badge warn";
  if (["stale", "offline", "error", "rst"].includes(value)) return "badge bad";
  return "badge";
}

// ---------------------------------------------------------------- summary

function renderSummary(s) {
  $("node-name").textContent = s.node;
  $("fabric-name").textContent = s.fabric.name ? "· fabric " + s.fabric.name : "";
  const sync = $("sync-state");
  sync.textContent = s.fabric["sync-state"] || "unknown";
  sync.className = badgeClass(s.fabric["sync-state"]);
  $("user-name").textContent = "signed in as " + s.user;
  const members = [...s.fabric.nodes].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  fillTable("fabric-nodes", members, (n) => [n.name, n.state, n.address, n.role, n["last-seen"]],
            [], "no fabric members known yet");
  const cniBy = new Map(s.k8s.cni.map((c) => [c["cluster-name"], c]));
  fillTable("k8s-connections", s.k8s.connections, (c) => {
    const st = c.state || {};
    const cni = cniBy.get(c["cluster-name"]) || {};
    const cniText = cni["cni-plugin"] ? [cni["cni-plugin"], cni.backend, cni["udp-port"] ? "port " + cni["udp-port"] : "",
      cni.vxlan !== undefined ? "vni " + cni.vxlan : ""].filter(Boolean).join(" ") : "";
    return [c["cluster-name"], c.owner, st.status || "", st["api-server"] || "", st["pod-count"], st["service-count"],
      st["node-count"], st.events, cniText, c["overlay-vxlan-analytics"] ? "vxlan analytics" : ""];
  }, [4, 5, 6, 7], "no Kubernetes connection configured (k8s connection-create)");
  const remote = s.k8s.connections.filter((c) => (c.state || {}).status === "remote");
  view.remoteNote = remote.length && remote.length === s.k8s.connections.length
    ? "This node owns no Kubernetes connection: the vPorts, services and history of " +
      remote.map((c) => c["cluster-name"] + " are kept on " + (c.owner || "its owner")).join(", ") +
      " (open that node's page)."
    : "";
  view.historyAvailable = !!(s.history && s.history.available);
  view.historyReason = (s.history && s.history.reason) || "";
  const slider = $("time-slider");
  slider.disabled = !view.historyAvailable;
  $("time-window").disabled = !view.historyAvailable;
  $("history-note").textContent = view.historyAvailable
    ? "Drag the slider to see the fabric, the vPort table and service backends as they were at that moment."
    : view.historyReason || "history is unavailable";
  $("updated").textContent = "updated " + fmtTime(s.now);
}

// ---------------------------------------------------------------- vPorts

function renderVports(data) {
  const box = $("vports");
  box.replaceChildren();
  const groups = new Map();
  for (const v of data.vports) {
    const host = v.hostname || "(no node)";
    if (!groups.has(host)) groups.set(host, []);
    groups.get(host).push(v);
  }
  if (data.source === "live") {
    view.hostOfIp = new Map(data.vports.map((v) => [v.ip, v.hostname || ""]));
    view.podOfIp = new Map(data.vports.map((v) => [v.ip, (v.namespace ? v.namespace + "/" : "") + (v.entity || "")]));
  }
  $("vport-count").textContent = data.vports.length + " vPorts" +
    (data.source === "history" ? " at " + data["at-text"] : " (live)");
  if (!groups.size) {
    box.appendChild(el("p", data.source === "history" ? "no vPorts at that time" : "no vPorts yet", "muted"));
    if (view.remoteNote) box.appendChild(el("p", view.remoteNote, "muted remote-note"));
    return;
  }
  for (const host of [...groups.keys()].sort()) {
    const card = el("div", null, "host-group");
    card.dataset.host = host;
    const rows = groups.get(host);
    const title = el("h3", host + " ");
    title.appendChild(el("span", rows.length + " pods · node-ip " + (rows[0]["node-ip"] || "?"), "muted"));
    card.appendChild(title);
    const table = el("table", null, "vport-table");
    const head = el("tr");
    for (const h of ["ip", "entity", "namespace", "svc-name", "switch", "port", "owner", "status"]) head.appendChild(el("th", h));
    const thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    const body = el("tbody");
    for (const v of rows) {
      const tr = el("tr");
      tr.dataset.ip = v.ip;
      cells(tr, [v.ip, v.entity, v.namespace, v["svc-name"], v.switch || [], v.port || [], v.owner, v.status]);
      body.appendChild(tr);
    }
    table.appendChild(body);
    card.appendChild(table);
    box.appendChild(card);
  }
}

// one backend (a k8s/service/backend entry) as "ns/pod ip:port on node", with its EndpointSlice conditions
function backendText(b) {
  const who = b.pod ? (b.namespace ? b.namespace + "/" : "") + b.pod : "(no pod)";
  const where = b.ip + (b.port ? ":" + b.port : "") + (b.node ? " on " + b.node : "");
  const flags = [b.ready === false ? "not ready" : "ready"];
  if (b.serving === false) flags.push("not serving");
  if (b.terminating) flags.push("terminating");
  return who + " " + where + " (" + flags.join(", ") + ")";
}

function renderServices(data) {
  $("service-source").textContent = data.source === "history" ? "at " + data["at-text"] : "(live)";
  fillTable("services", data.services, (s) => [s["cluster-name"], s.namespace, s.name, s.type, s["cluster-ips"] || [],
    s["node-ports"] || [], s.ports || [], (s.backends || []).map(backendText)], [],
  data.source === "history" ? "no services at that time" : "no services yet");
}

// ---------------------------------------------------------------- connections

function stateClass(state) {
  if (state === "established") return "established";
  if (state === "syn" || state === "syn-ack") return "syn";
  if (state === "rst") return "reset";
  if (state === "fin" || state === "closed") return "closing";
  return "active";
}
const STATE_COLOR = { established: "#1f9d55", syn: "#d69e2e", reset: "#c53030", closing: "#a0aec0", active: "#3182ce" };
const STATE_RANK = { established: 4, syn: 3, active: 2, reset: 1, closing: 0 };

// "ns/app-5d8f7c9b6d-x2k4q" -> "ns/app-x2k4q": a Deployment's pod without its ReplicaSet hash
function shortPod(name) { return name.replace(/-[a-z0-9]{8,10}-([a-z0-9]{5})$/, "-$1"); }

function endpointName(ip, pod, ns) {
  if (pod) return (ns ? ns + "/" : "") + pod;
  return view.podOfIp.get(ip) || ip;
}

function renderConnections(data, summary) {
  $("conn-count").textContent = data.total + " in table" + (view.at !== null ? " (live table; history covers vPorts and services)" : "");
  const note = $("conn-note");
  if (!summary["connection-stats"].enable) {
    note.textContent = "connection-stats-settings enable is false: no connections are tracked.";
  } else if (!data.total) {
    note.textContent = "No connection seen yet (the switch's sFlow must reach this agent's --sflow-addr).";
  } else {
    note.textContent = "";
  }
  fillTable("talkers", data.connections.slice(0, 20), (c) => [
    endpointName(c["src-ip"], c["src-pod"], c["src-namespace"]) + " (" + c["src-ip"] + ":" + c["src-port"] + ")",
    endpointName(c["dst-ip"], c["dst-pod"], c["dst-namespace"]) + " (" + c["dst-ip"] + ")",
    c["dst-port"], c.protocol === 6 ? "tcp" : c.protocol === 17 ? "udp" : c.protocol, c["cur-state"] || "",
    c.latency === undefined ? "" : c.latency, c.bytes, c.packets, c.age, c.switch || "",
  ], [2, 5, 6, 7, 8], "no connections");
  drawGraph(data.connections);
}

function drawGraph(conns) {
  const g = $("conn-graph");
  g.replaceChildren();
  const W = 900, H = 520, top = 40, bottom = 20;
  // aggregate per pod pair
  const edges = new Map();
  const pods = new Map(); // name -> {host, ip}
  for (const c of conns) {
    const a = endpointName(c["src-ip"], c["src-pod"], c["src-namespace"]);
    const b = endpointName(c["dst-ip"], c["dst-pod"], c["dst-namespace"]);
    if (!pods.has(a)) pods.set(a, { host: view.hostOfIp.get(c["src-ip"]) || "not in the vPort table", ip: c["src-ip"] });
    if (!pods.has(b)) pods.set(b, { host: view.hostOfIp.get(c["dst-ip"]) || "not in the vPort table", ip: c["dst-ip"] });
    const key = a + "\u2192" + b;
    const e = edges.get(key) || { a, b, bytes: 0, n: 0, state: c["cur-state"], latency: c.latency, port: c["dst-port"] };
    e.bytes += c.bytes || 0;
    e.n += 1;
    if (STATE_RANK[stateClass(c["cur-state"])] > STATE_RANK[stateClass(e.state)]) e.state = c["cur-state"];
    if (c.latency !== undefined && (e.latency === undefined || c.latency > e.latency)) e.latency = c.latency;
    edges.set(key, e);
  }
  if (!pods.size) {
    g.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "host-label" }, "no pod-to-pod connections yet"));
    return;
  }
  const hosts = [...new Set([...pods.values()].map((p) => p.host))].sort();
  const colW = W / hosts.length;
  const pos = new Map();
  hosts.forEach((host, i) => {
    const x = colW * i + colW / 2;
    g.appendChild(svg("text", { x, y: 20, "text-anchor": "middle", class: "host-label" }, host));
    g.appendChild(svg("rect", { x: colW * i + 6, y: 28, width: colW - 12, height: H - 34, rx: 8, fill: "none",
      stroke: "#d9dde6" }));
    const members = [...pods.entries()].filter(([, p]) => p.host === host).map(([n]) => n).sort();
    const step = (H - top - bottom) / Math.max(members.length, 1);
    members.forEach((name, j) => pos.set(name, { x, y: top + step * j + step / 2 }));
  });
  const maxBytes = Math.max(1, ...[...edges.values()].map((e) => e.bytes));
  const edgeLayer = svg("g", { class: "edges" });
  for (const e of edges.values()) {
    const p = pos.get(e.a), q = pos.get(e.b);
    const width = 1 + 5 * Math.log1p(e.bytes) / Math.log1p(maxBytes);
    const mx = (p.x + q.x) / 2 + (p.y === q.y ? 0 : 0), my = (p.y + q.y) / 2 - (p.x === q.x ? 0 : 40);
    const cx = p.x === q.x ? p.x + 80 : mx;
    const path = svg("path", { d: `M ${p.x} ${p.y} Q ${cx} ${my} ${q.x} ${q.y}`, fill: "none",
      stroke: STATE_COLOR[stateClass(e.state)], "stroke-width": width.toFixed(1), "stroke-opacity": 0.8,
      class: "edge " + stateClass(e.state) });
    path.appendChild(svg("title", {}, `${e.a} \u2192 ${e.b}:${e.port}  ${e.state || ""}  ${e.bytes} bytes` +
      (e.latency !== undefined ? `  latency ${e.latency} \u00b5s` : "") + `  (${e.n} connection${e.n > 1 ? "s" : ""})`));
    edgeLayer.appendChild(path);
  }
  g.appendChild(edgeLayer);
  for (const [name, p] of pos) {
    const node = svg("g", { class: "pod", transform: `translate(${p.x},${p.y})` });
    node.appendChild(svg("circle", { r: 7, fill: "#243b53" }));
    const label = shortPod(name);
    node.appendChild(svg("text", { x: 10, y: 4 }, label.length > 30 ? label.slice(0, 29) + "\u2026" : label));
    node.appendChild(svg("title", {}, `${name} ${pods.get(name).ip}`));
    g.appendChild(node);
  }
}

// ---------------------------------------------------------------- the fabric drawing

// Switches across the top, each with its ports; below, the Kubernetes nodes, a line to every port a node
// is plugged into (a dual-homed node has two), and the pods in each node.  Port colour: oper-status and
// discards; the tooltips carry the port's speed, utilisation, errors and discards.
function portClass(p) {
  if (p["oper-status"] && p["oper-status"] !== "up") return "port down";
  if ((p["in-discard-percent"] || 0) >= 1 || (p["out-discard-percent"] || 0) >= 1) return "port discarding";
  return "port up";
}

function drawFabric(data) {
  const g = $("fabric-drawing");
  g.replaceChildren();
  $("topology-source").textContent = data.source === "history" ? "at " + data["at-text"] : "(live)";
  const unplaced = data.unplaced || [];
  $("unplaced-note").textContent = unplaced.length
    ? "Not placed: " + unplaced.map((u) => `${u.node} (${u.reason})`).join("; ")
    : "";
  const switches = data.switches || [];
  if (!switches.length) {
    g.setAttribute("viewBox", "0 0 1000 60");
    g.appendChild(svg("text", { x: 500, y: 34, "text-anchor": "middle", class: "host-label" },
      data.source === "history" ? "no attachments at that time" : "no attachment learned yet (LLDP, neighbour table + FDB, sFlow)"));
    return;
  }
  const nodes = new Map();   // "cluster/node" -> {name, pods, links: [[switch, port]]}
  for (const sw of switches) for (const p of sw.ports) for (const n of p.nodes) {
    const key = n["cluster-name"] + "/" + n.node;
    if (!nodes.has(key)) nodes.set(key, { name: n.node, cluster: n["cluster-name"], pods: n.pods, links: [] });
    nodes.get(key).links.push([sw.name, p.port]);
  }
  const W = 1000, portW = 46, gap = 6, swTop = 10, portY = 62, nodeY = 150;
  const ports = new Map();
  const totalPorts = switches.reduce((n, sw) => n + sw.ports.length, 0);
  const scale = Math.min(1, (W - 20 * switches.length) / Math.max(1, totalPorts * (portW + gap)));
  let x = 10;
  for (const sw of switches) {
    const width = Math.max(120, sw.ports.length * (portW + gap) * scale + gap);
    const box = svg("g", { class: "switch", "data-switch": sw.name });
    box.appendChild(svg("rect", { x, y: swTop, width, height: 40, rx: 6, class: "switch-box " + (sw.state || "") }));
    box.appendChild(svg("text", { x: x + 8, y: swTop + 25, class: "switch-label" }, sw.name + (sw.state === "offline" ? " (offline)" : "")));
    g.appendChild(box);
    sw.ports.forEach((p, i) => {
      const px = x + gap + i * (portW + gap) * scale;
      const port = svg("g", { class: portClass(p), "data-port": sw.name + ":" + p.port });
      port.appendChild(svg("rect", { x: px, y: portY, width: portW * scale, height: 22, rx: 3 }));
      port.appendChild(svg("text", { x: px + 3, y: portY + 15 }, p.port));
      const health = [`${sw.name} ${p.port}`, p["oper-status"] || "", p.speed ? (p.speed / 1e9) + "G" : "",
        p["in-utilization"] !== undefined ? `in ${p["in-utilization"]}%` : "",
        p["out-utilization"] !== undefined ? `out ${p["out-utilization"]}%` : "",
        p["in-discard-percent"] !== undefined ? `discards in ${p["in-discard-percent"]}% out ${p["out-discard-percent"]}%` : "",
        p["in-errors"] !== undefined ? `errors in ${p["in-errors"]} out ${p["out-errors"]}` : ""].filter(Boolean).join("  ");
      port.appendChild(svg("title", {}, health));
      g.appendChild(port);
      ports.set(sw.name + "\u0000" + p.port, { x: px + portW * scale / 2, y: portY + 22 });
    });
    x += width + 20;
  }
  const list = [...nodes.values()].sort((a, b) => (a.cluster + a.name).localeCompare(b.cluster + b.name));
  const nodeW = Math.min(180, (W - 20) / Math.max(1, list.length) - 10);
  const podRows = Math.max(1, ...list.map((n) => Math.min(n.pods.length, 8)));
  const height = nodeY + 34 + podRows * 14 + 20;
  g.setAttribute("viewBox", `0 0 ${W} ${height}`);
  list.forEach((n, i) => {
    const nx = 10 + i * (nodeW + 10);
    const group = svg("g", { class: "k8s-node", "data-node": n.name });
    for (const [sw, port] of n.links) {
      const p = ports.get(sw + "\u0000" + port);
      if (p) group.appendChild(svg("line", { x1: p.x, y1: p.y, x2: nx + nodeW / 2, y2: nodeY, class: "cable" }));
    }
    group.appendChild(svg("rect", { x: nx, y: nodeY, width: nodeW, height: 30 + Math.min(n.pods.length, 8) * 14, rx: 6,
      class: "node-box" }));
    group.appendChild(svg("text", { x: nx + 6, y: nodeY + 18, class: "node-label" },
      `${n.name} (${n.pods.length} pod${n.pods.length === 1 ? "" : "s"})`));
    n.pods.slice(0, 8).forEach((p, j) => {
      const t = svg("text", { x: nx + 10, y: nodeY + 34 + j * 14, class: "pod-label" },
        j === 7 && n.pods.length > 8 ? `+${n.pods.length - 7} more` : shortPod(p.entity || p.ip));
      t.appendChild(svg("title", {}, `${p.namespace || ""}/${p.entity || ""} ${p.ip} ${p.power || ""}`));
      group.appendChild(t);
    });
    group.appendChild(svg("title", {}, `${n.cluster}/${n.name}: ` + n.links.map(([s, p]) => s + " " + p).join(", ")));
    g.appendChild(group);
  });
}

// ---------------------------------------------------------------- time slider

// The slider counts seconds across the chosen window; its right end is "live".
function sliderTime() {
  const slider = $("time-slider");
  const back = Number(slider.max) - Number(slider.value);
  if (back <= 0) return null;
  return Date.now() / 1000 - back;
}

function showTimeLabel() {
  const label = $("time-label");
  if (view.at === null) { label.textContent = "live"; label.className = "badge live"; }
  else { label.textContent = fmtTime(view.at); label.className = "badge past"; }
}

function setupTime() {
  const slider = $("time-slider");
  slider.max = String(view.windowSeconds);
  slider.value = slider.max;
  slider.addEventListener("input", () => {
    const t = sliderTime();
    $("time-label").textContent = t === null ? "live" : fmtTime(t);
  });
  slider.addEventListener("change", () => { view.at = sliderTime(); showTimeLabel(); refresh(); });
  $("time-window").addEventListener("change", (ev) => {
    const back = Number(slider.max) - Number(slider.value);
    view.windowSeconds = Number(ev.target.value);
    slider.max = String(view.windowSeconds);
    slider.value = String(Math.max(0, view.windowSeconds - back));
    view.at = sliderTime(); showTimeLabel(); refresh();
  });
  $("time-live").addEventListener("click", () => {
    slider.value = slider.max; view.at = null; showTimeLabel(); refresh();
  });
}

// Ticks under the slider: when vPorts came and went (green up, red down) and backends changed (grey).
async function drawTicks() {
  const strip = $("time-ticks");
  if (!view.historyAvailable) { strip.replaceChildren(); return; }
  const to = Date.now() / 1000, from = to - view.windowSeconds;
  let data;
  try { data = await getJSON(`/api/changes?from=${from.toFixed(3)}&to=${to.toFixed(3)}`); }
  catch (e) { return; }
  strip.replaceChildren();
  for (const c of data.changes) {
    const x = (1000 * (c.time - from) / view.windowSeconds).toFixed(1);
    const up = c.op === "update";
    const attrs = c.kind === "vport"
      ? { x1: x, x2: x, y1: up ? 2 : 12, y2: up ? 12 : 22, stroke: up ? "#1f9d55" : "#c53030" }
      : c.kind === "attachment" ? { x1: x, x2: x, y1: 4, y2: 20, stroke: "#3182ce" }
      : { x1: x, x2: x, y1: 8, y2: 16, stroke: "#a0aec0" };
    const line = svg("line", { ...attrs, "stroke-width": 1.5, class: "tick " + c.kind + " " + c.op });
    line.appendChild(svg("title", {}, `${fmtTime(c.time)} ${c.op === "update" ? "+" : "-"} ${c.kind} ${c.name || c.key}`));
    strip.appendChild(line);
  }
  if (view.at !== null) {
    const x = (1000 * (view.at - from) / view.windowSeconds).toFixed(1);
    strip.appendChild(svg("line", { x1: x, x2: x, y1: 0, y2: 24, stroke: "#2a4365", "stroke-width": 3, class: "cursor" }));
  }
}

// ---------------------------------------------------------------- refresh loop

async function refresh() {
  try {
    const summary = await getJSON("/api/summary");
    renderSummary(summary);
    if (view.at !== null && !view.historyAvailable) view.at = null;
    const liveVports = view.at === null ? null : getJSON("/api/vports");
    const [vports, services, conns, fabric] = await Promise.all([
      getJSON("/api/vports" + atQuery()), getJSON("/api/services" + atQuery()), getJSON("/api/connections?limit=40"),
      getJSON("/api/fabric" + atQuery()),
    ]);
    if (liveVports) renderVportsHosts(await liveVports);
    drawFabric(fabric);
    renderVports(vports);
    renderServices(services);
    renderConnections(conns, summary);
    await drawTicks();
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("updated").textContent = "error: " + err.message;
  }
  clearTimeout(view.timer);
  if (view.at === null) view.timer = setTimeout(refresh, REFRESH_MS);
}

function renderVportsHosts(live) {  // keep the graph's host columns live while looking at the past
  view.hostOfIp = new Map(live.vports.map((v) => [v.ip, v.hostname || ""]));
  view.podOfIp = new Map(live.vports.map((v) => [v.ip, (v.namespace ? v.namespace + "/" : "") + (v.entity || "")]));
}

document.addEventListener("DOMContentLoaded", () => { setupTime(); refresh(); });
