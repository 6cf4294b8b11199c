// What every dashboard page shares: times in UTC (local time on hover), numbers, the live
// stream (Server-Sent Events) and its status in the header, and calls to the API.
"use strict";

const TCP = (() => {
  const pad = (n, width = 2) => String(n).padStart(width, "0");

  function utc(ms, withMs = false) {
    const d = new Date(ms);
    let text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    if (withMs) text += "." + pad(d.getUTCMilliseconds(), 3);
    return text;
  }

  function local(ms) {
    const d = new Date(ms);
    const text = d.toLocaleString(undefined, { hour12: false, timeZoneName: "short" });
    return `local time: ${text} (+${pad(d.getMilliseconds(), 3)} ms)`;
  }

  // A <time> showing UTC, with the local time as its tooltip.
  function time(ms, withMs = false) {
    const node = document.createElement("time");
    if (ms === null || ms === undefined) {
      node.textContent = "–";
      return node;
    }
    node.dateTime = new Date(ms).toISOString();
    node.textContent = utc(ms, withMs);
    node.title = local(ms);
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function text(value) {
    return value === null || value === undefined || value === "" ? "–" : String(value);
  }

  // A decimal string trimmed of trailing zeros after the point (kept exact: no float).
  function decimal(value) {
    if (value === null || value === undefined) return "–";
    const s = String(value);
    return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  }

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // A table row with one cell per field (data-field=name), numeric ones right-aligned.
  function row(attributes, fields, numeric) {
    const node = element("tr", attributes);
    const cells = {};
    for (const field of fields) {
      cells[field] = element("td", { class: numeric.includes(field) ? "num" : "", "data-field": field });
      node.append(cells[field]);
    }
    return { node, cells };
  }

  function setStatus(state, label) {
    const status = document.getElementById("live-status");
    if (!status) return;
    status.dataset.state = state;
    status.textContent = label;
  }

  // Listen to a page's stream; `handlers` maps event names to functions of the parsed data.
  // After a dropped stream is back, `onReconnect` fills in what was missed meanwhile.
  function connect(url, handlers, onReconnect = null) {
    const source = new EventSource(url);
    let hellos = 0;
    source.addEventListener("hello", (event) => {
      hellos += 1;
      if (hellos > 1 && onReconnect) onReconnect();
      const hello = JSON.parse(event.data);
      document.body.dataset.liveMode = hello.mode;
      setStatus(hello.mode === "redis" ? "live" : "degraded", hello.label);
      showInterruption(hello.interrupted);
    });
    source.addEventListener("notice", (event) => showInterruption(JSON.parse(event.data).interrupted));
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
    }
    source.onerror = () => setStatus("reconnecting", "reconnecting…");
    return source;
  }

  function showInterruption(reason) {
    const banner = document.getElementById("interrupted");
    if (!banner) return;
    banner.hidden = !reason;
    banner.textContent = reason || "";
  }

  function cookie(name) {
    const found = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  // POST to the API with the session and its CSRF token; resolves to {status, body}.
  async function post(url) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": cookie("csrftoken"), Accept: "application/json" },
    });
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      body = { detail: response.statusText };
    }
    return { status: response.status, body };
  }

  function data(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }

  return { utc, local, time, duration, text, decimal, element, row, connect, post, data, setStatus };
})();
