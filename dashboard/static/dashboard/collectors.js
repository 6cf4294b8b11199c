// The collectors board: every stream's status, live; staff start, stop and restart streams
// through the control API and see what it answered.
"use strict";

(() => {
  const script = document.currentScript;
  const table = document.getElementById("collectors");
  const tbody = table.querySelector("tbody");
  const canControl = table.dataset.canControl === "true";
  const rows = new Map(); // name -> {node, cells, outcome}
  const FIELDS = ["name", "state", "health", "worker", "uptime", "messages", "errors", "restarts",
    "heartbeat", "last_error"];
  const NUMERIC = ["uptime", "messages", "errors", "restarts"];

  function rowFor(name) {
    let row = rows.get(name);
    if (row) return row;
    const { node, cells } = TCP.row({ "data-name": name }, FIELDS, NUMERIC);
    if (canControl) {
      const controls = TCP.element("td", { class: "controls" });
      for (const action of ["start", "stop", "restart"]) {
        const button = TCP.element("button", { type: "button", "data-action": action, text: action });
        button.addEventListener("click", () => control(name, action));
        controls.append(button);
      }
      cells.outcome = TCP.element("div", { class: "outcome", "data-field": "outcome" });
      controls.append(cells.outcome);
      node.append(controls);
    }
    row = { node, cells };
    rows.set(name, row);
    tbody.append(node);
    return row;
  }

  async function control(name, action) {
    const row = rows.get(name);
    row.cells.outcome.textContent = `${action}: sending…`;
    const url = `/api/v1/collectors/${encodeURIComponent(name)}/${action}/`;
    let answer;
    try {
      answer = await TCP.post(url);
    } catch (error) {
      row.cells.outcome.textContent = `${action}: failed: ${error}`;
      row.cells.outcome.className = "outcome error";
      return;
    }
    const body = answer.body;
    const accepted = answer.status === 202;
    row.cells.outcome.className = "outcome " + (accepted ? "ok" : "error");
    row.cells.outcome.dataset.status = answer.status;
    if (accepted) {
      const where = body.worker ? ` to ${body.worker}` : "";
      const note = body.note ? ` (${body.note})` : "";
      const sent = body.task_id ? `${body.action} sent${where}${note}` : `nothing to send${note}`;
      row.cells.outcome.replaceChildren(`${sent} at `, TCP.time(Date.now()), " UTC");
    } else {
      row.cells.outcome.textContent = `${action} refused (${answer.status}): ${body.detail || JSON.stringify(body)}`;
    }
  }

  function show(snapshot) {
    const note = document.getElementById("collectors-unavailable");
    note.hidden = !snapshot.unavailable;
    note.textContent = snapshot.unavailable ? `Collector state: ${snapshot.unavailable}` : "";
    const seen = new Set();
    for (const c of snapshot.collectors) {
      seen.add(c.name);
      const { node, cells } = rowFor(c.name);
      const stats = c.statistics;
      cells.name.textContent = c.name;
      cells.state.textContent = c.should_be_running ? c.status : `${c.status} (disabled)`;
      cells.health.textContent = c.is_healthy ? "healthy" : (c.issues.join("; ") || "unhealthy");
      cells.worker.textContent = TCP.text(c.worker);
      cells.uptime.textContent = stats.uptime_seconds ? TCP.duration(stats.uptime_seconds) : "–";
      cells.messages.textContent = stats.messages_received;
      cells.errors.textContent = stats.errors;
      cells.restarts.textContent = stats.restarts;
      cells.heartbeat.textContent = c.health.time_since_heartbeat === null ? "–" :
        `${TCP.duration(c.health.time_since_heartbeat)} ago`;
      cells.last_error.textContent = TCP.text(stats.last_error);
      cells.last_error.title = cells.last_error.textContent;
      node.dataset.status = c.status;
      node.dataset.restarts = stats.restarts;
      node.classList.toggle("unhealthy", !c.is_healthy);
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.node.remove();
        rows.delete(name);
      }
    }
  }

  show(TCP.data("collectors-data"));
  TCP.connect(script.dataset.stream, { collectors: show });
})();
