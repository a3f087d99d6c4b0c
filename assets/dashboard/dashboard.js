// The log-pipeline dashboard. It reads only the analytics API of the service that served it:
// GET /analytics?from&to&top (the range), /analytics/hours (to tell "no data yet" from "no data in
// this range") and /analytics/ingest (the ingest figures: the service measures the rate itself and,
// with storage.backend s3, sums every instance's, as the totals are the whole bucket's). With auth on, a 401 asks for the token, which stays in this tab's sessionStorage and
// goes in the Authorization header, never in a URL. With sites, /analytics/sites says whose data
// the token reads: a site's read key sees its site's name (and no ingest figures, which are the
// whole service's); an operator gets a picker (all sites, with each one's totals, or one site).
"use strict";

const REFRESH_MS = 15000;
const TOP = 10;
const TOKEN_KEY = "log-pipeline.dashboard.token";
const HOUR_MS = 3600 * 1000;
const MAX_RANGE_HOURS = 744;

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
const fmt = (n) => number.format(n);
const percent = (part, whole) => (whole > 0 ? ((100 * part) / whole).toFixed(1) + "%" : "–");

/// An API answer that is not a success, with the service's error code and message.
class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = "Bearer " + bearer;
  let response;
  try {
    response = await fetch(path, { headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError("network", "The service did not answer (" + error.message + ").", 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const code = body && body.error ? body.error : "http_" + response.status;
    const message = body && body.message ? body.message : response.statusText;
    throw new ApiError(code, message, response.status);
  }
  return body;
}

const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
const hourLabel = (ms) => new Date(ms).toISOString().slice(11, 16);
const dayLabel = (ms) => new Date(ms).toISOString().slice(0, 10);
const floorHour = (ms) => Math.floor(ms / HOUR_MS) * HOUR_MS;

/// The range the controls ask for, as [from, to) in milliseconds (whole UTC hours).
function chosenRange() {
  const choice = document.querySelector('input[name="range"]:checked').value;
  const end = floorHour(Date.now()) + HOUR_MS;
  if (choice === "24h") return { from: end - 24 * HOUR_MS, to: end };
  if (choice === "7d") return { from: end - 168 * HOUR_MS, to: end };
  const parse = (input) => {
    const ms = Date.parse(input.value + ":00Z");
    return Number.isNaN(ms) ? null : floorHour(ms);
  };
  const from = parse($("from"));
  const to = parse($("to"));
  if (from === null || to === null) {
    throw new ApiError("invalid_range", "Give both ends of the custom range.", 0);
  }
  if (to <= from || (to - from) / HOUR_MS > MAX_RANGE_HOURS) {
    throw new ApiError(
      "invalid_range",
      "The end must be after the start, and the range at most 31 days.",
      0,
    );
  }
  return { from, to };
}

/// The sites the token reads (GET /analytics/sites), asked at every refresh: a site added or
/// removed by a reload shows in the picker without reloading the page.
let access = null;

/// The site the picker names ("" for all sites, and for a token that reads one site).
const chosenSite = () => $("site").value;
const siteQuery = (join) => (chosenSite() ? join + "site=" + encodeURIComponent(chosenSite()) : "");

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

/// The site's name in the header, and for an operator of a service with sites the picker.
function renderSites() {
  const picker = access.allSites && access.sites.length > 0;
  $("site-picker").hidden = !picker;
  const ids = access.sites.map((site) => site.id).join(" ");
  if (picker && $("site").dataset.ids !== ids) {
    const chosen = chosenSite();
    $("site").replaceChildren(option("", "All sites"), ...access.sites.map((s) => option(s.id, s.name)));
    $("site").value = access.sites.some((site) => site.id === chosen) ? chosen : "";
    $("site").dataset.ids = ids;
  }
  let name = "";
  if (!access.allSites && access.sites.length > 0) name = access.sites[0].name;
  if (picker) {
    const site = access.sites.find((s) => s.id === chosenSite());
    name = site ? site.name : "All sites";
  }
  $("site-name").textContent = name;
  $("site-name").hidden = name === "";
  document.title = (name ? name + " · " : "") + "Traffic · log-pipeline";
}

let loading = false;
/// A refresh asked for while one runs (a new choice of site) runs when it ends.
let again = false;

async function refresh() {
  if (loading) {
    again = true;
    return;
  }
  loading = true;
  $("status").textContent = "Loading…";
  try {
    const range = chosenRange();
    access = await api("/analytics/sites");
    renderSites();
    const query = "from=" + iso(range.from) + "&to=" + iso(range.to) + "&top=" + TOP + siteQuery("&");
    // The ingest figures are the whole service's: an operator's only.
    const [summary, ingest] = await Promise.all([
      api("/analytics?" + query),
      access.allSites ? api("/analytics/ingest") : null,
    ]);
    hideError();
    $("token-panel").hidden = true;
    $("forget-token").hidden = !token();
    $("ingest-card").hidden = !ingest;
    $("rejected-card").hidden = !ingest;
    if (ingest) renderIngest(ingest);
    if (summary.totalRequests === 0) {
      await renderEmpty(range);
    } else {
      $("empty").hidden = true;
      // Shown first: the chart is drawn at the size its container has on screen.
      $("data").hidden = false;
      renderSummary(summary, range);
    }
    $("bot-list").textContent = summary.botList.split("#")[0].replace("@", " ");
    $("status").textContent =
      "Updated " + new Date().toISOString().slice(11, 19) + " UTC · " + rangeText(range);
    // What is shown now (read by the browser tests after a choice of site).
    document.body.dataset.shown = chosenSite() || "all";
  } catch (error) {
    showError(error);
  } finally {
    loading = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

function rangeText(range) {
  return dayLabel(range.from) + " " + hourLabel(range.from) + " – " + dayLabel(range.to) + " " +
    hourLabel(range.to) + " UTC";
}

async function renderEmpty(range) {
  const all = await api("/analytics/hours" + siteQuery("?"));
  $("data").hidden = true;
  $("empty").hidden = false;
  if (all.hours.length === 0) {
    $("empty-title").textContent = "No data yet";
    $("empty-text").textContent =
      "Nothing has been stored yet. Send records with POST /logs; they show here at the next refresh.";
  } else {
    const first = all.hours[0].hour;
    const last = all.hours[all.hours.length - 1].hour;
    $("empty-title").textContent = "No data in this range";
    $("empty-text").textContent =
      "No requests between " + rangeText(range) + ". Stored hours go from " + first + " to " + last +
      "; choose another range.";
  }
}

function renderSummary(summary, range) {
  const total = summary.totalRequests;
  $("incomplete").hidden = summary.complete !== false;
  $("total").textContent = fmt(total);
  $("bot-share").textContent = percent(summary.botRequests, total);
  let split = fmt(summary.botRequests) + " bots · " + fmt(summary.humanRequests) + " humans";
  if (summary.unclassifiedRequests > 0) {
    split += " · " + fmt(summary.unclassifiedRequests) + " not classified";
  }
  $("bot-split").textContent = split;
  $("distinct-paths").textContent = fmt(summary.distinctPaths);
  $("distinct-agents").textContent = fmt(summary.distinctUserAgents);
  fillTable("top-paths", summary.topPaths, total, (row) => [row.key]);
  fillTable("top-agents", summary.topUserAgents, total, (row) => [
    row.key,
    row.bot === null ? "mixed" : row.bot ? "bot" : "human",
  ]);
  fillTable("top-bots", summary.topBots, total, (row) => [row.key]);
  renderPerSite(summary.sites, total);
  const hours = everyHour(summary.hours, range);
  renderChart(hours);
  const body = $("hours-table").tBodies[0];
  body.replaceChildren(
    ...hours.map((h) =>
      row([
        dayLabel(h.at) + " " + hourLabel(h.at),
        fmt(h.total),
        fmt(h.bots),
        fmt(h.humans),
      ]),
    ),
  );
}

/// Each site's totals, in an answer over every site (an operator's "All sites").
function renderPerSite(sites, total) {
  $("per-site").hidden = !sites;
  if (!sites) return;
  $("per-site-table").tBodies[0].replaceChildren(
    ...sites.map((site) =>
      row([
        site.name,
        fmt(site.totalRequests),
        fmt(site.botRequests),
        fmt(site.humanRequests),
        percent(site.totalRequests, total),
      ]),
    ),
  );
}

/// Every hour of the range, with zeros for hours without data.
function everyHour(hours, range) {
  const byHour = new Map(hours.map((h) => [Date.parse(h.hour), h]));
  const all = [];
  for (let at = range.from; at < range.to; at += HOUR_MS) {
    const h = byHour.get(at);
    const total = h ? h.totalRequests : 0;
    const bots = h && h.botRequests !== undefined ? h.botRequests : 0;
    const humans = h && h.humanRequests !== undefined ? h.humanRequests : 0;
    all.push({ at, total, bots, humans });
  }
  return all;
}

function row(cells, numericFrom = 1) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) td.scope = "row";
    if (i >= numericFrom) td.className = "num";
    td.textContent = text;
    tr.append(td);
  });
  return tr;
}

function fillTable(id, entries, total, label) {
  const body = $(id).tBodies[0];
  if (entries.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.textContent = "None in this range.";
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...entries.map((entry) => {
      const cells = label(entry);
      return row([...cells, fmt(entry.requests), percent(entry.requests, total)], cells.length);
    }),
  );
}

const SVG = "http://www.w3.org/2000/svg";
function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

/// A stacked bar per hour (humans below, bots above), drawn as SVG; its text alternative is the
/// table under it.
let chartHours = [];
function renderChart(hours) {
  chartHours = hours;
  // Drawn at the container's size in pixels, so the axis text keeps its size on a phone.
  const width = Math.max(280, Math.round($("chart").clientWidth || 960));
  const height = width < 600 ? 200 : 260;
  const left = 56;
  const bottom = 28;
  const top = 10;
  const plotWidth = width - left - 8;
  const plotHeight = height - top - bottom;
  const max = Math.max(1, ...hours.map((h) => h.total));
  const scale = niceMax(max);
  const chart = svg("svg", {
    viewBox: "0 0 " + width + " " + height,
    role: "img",
    "aria-label":
      "Requests per hour, bots stacked on humans, " + hours.length + " hours, at most " +
      fmt(max) + " requests in an hour",
    width,
    height,
  });
  for (let i = 0; i <= 4; i++) {
    const value = (scale * i) / 4;
    const y = top + plotHeight - (plotHeight * value) / scale;
    chart.append(svg("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmt(value)));
  }
  const slot = plotWidth / hours.length;
  const barWidth = Math.max(1, slot * 0.8);
  const labelEvery = Math.ceil(hours.length / Math.max(2, Math.floor(plotWidth / 110)));
  hours.forEach((h, i) => {
    const x = left + i * slot + (slot - barWidth) / 2;
    const humanHeight = (plotHeight * h.humans) / scale;
    const botHeight = (plotHeight * h.bots) / scale;
    const group = svg("g", {});
    group.append(
      svg("title", {}, dayLabel(h.at) + " " + hourLabel(h.at) + " UTC: " + fmt(h.total) +
        " requests, " + fmt(h.bots) + " bots, " + fmt(h.humans) + " humans"),
    );
    group.append(svg("rect", { x, width: barWidth, y: top + plotHeight - humanHeight, height: humanHeight, class: "human" }));
    group.append(svg("rect", { x, width: barWidth, y: top + plotHeight - humanHeight - botHeight, height: botHeight, class: "bot" }));
    chart.append(group);
    if (i % labelEvery === 0) {
      const text = hourLabel(h.at) === "00:00" || i === 0 ? dayLabel(h.at).slice(5) + " " + hourLabel(h.at) : hourLabel(h.at);
      chart.append(svg("text", { x: x + barWidth / 2, y: height - 8, class: "axis", "text-anchor": "middle" }, text));
    }
  });
  $("chart").replaceChildren(chart);
}

function niceMax(max) {
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= max) return step * magnitude;
  }
  return 10 * magnitude;
}

function renderIngest(ingest) {
  // With storage.backend s3, the figures of every instance writing to the bucket ("instance" when
  // the storage is local, or the bucket did not answer).
  // Counted for the whole service: with one site chosen, they are still every site's.
  const who = (ingest.scope === "bucket"
    ? (ingest.instances === 1 ? " by the one instance" : " by all " + fmt(ingest.instances) + " instances")
    : " by this instance") + (chosenSite() ? " (all sites)" : "");
  $("ingest-rate").textContent = fmt(Math.round(ingest.recordsPerSecond)) + " records/s";
  $("ingest-total").textContent = fmt(ingest.recordsStored) + " records stored since start" + who;
  const rejected = ingest.rejectedRequests;
  $("rejected").textContent = fmt(rejected.total);
  $("rejected-split").textContent = "since start" + who + ": " + fmt(rejected.invalid) + " invalid · " +
    fmt(rejected.overloaded) + " overloaded · " + fmt(rejected.failed) + " failed";
}

function showError(error) {
  if (error.status === 401) {
    $("data").hidden = true;
    $("empty").hidden = true;
    $("token-panel").hidden = false;
    $("status").textContent = "An access token is needed.";
    if (token()) {
      showMessage("The service refused the access token (" + error.message + "). Enter another one.");
      sessionStorage.removeItem(TOKEN_KEY);
    } else {
      hideError();
    }
    $("token").focus();
    return;
  }
  let text = error.message;
  if (error.code === "busy") text = "The service is busy with other queries; retrying at the next refresh.";
  showMessage(text + (error.code && error.status ? " (" + error.status + " " + error.code + ")" : ""));
  $("status").textContent = "Last refresh failed.";
}

function showMessage(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

let timer = null;
function schedule() {
  clearInterval(timer);
  timer = $("auto").checked ? setInterval(refresh, REFRESH_MS) : null;
}

function start() {
  const now = floorHour(Date.now());
  $("from").value = iso(now - 24 * HOUR_MS).slice(0, 16);
  $("to").value = iso(now + HOUR_MS).slice(0, 16);
  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.addEventListener("change", () => {
      $("custom").hidden = radio.value !== "custom" || !radio.checked;
      if (radio.value !== "custom") refresh();
    });
  }
  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  $("refresh").addEventListener("click", refresh);
  $("site").addEventListener("change", refresh);
  $("auto").addEventListener("change", schedule);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    refresh();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("forget-token").hidden = true;
    refresh();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => chartHours.length && renderChart(chartHours), 150);
  });
  schedule();
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
