// The markets board: one row per stream, prices live, 24 h figures and collector state as
// the server's snapshots say; a stale or unhealthy stream stands out.
"use strict";

(() => {
  const script = document.currentScript;
  const initial = TCP.data("board-data");
  const tbody = document.querySelector("#board tbody");
  const rows = new Map(); // market -> {node, cells, data, tick, collector}
  const FIELDS = ["market", "last_price", "change", "high_24h", "low_24h", "volume_24h",
    "trades_per_minute", "last_trade", "state", "health", "last_error"];
  const DEFAULT_SILENCE = 60;
  let collectors = new Map();

  const NUMERIC = ["last_price", "change", "high_24h", "low_24h", "volume_24h", "trades_per_minute"];

  function rowFor(market) {
    let row = rows.get(market);
    if (row) return row;
    row = { ...TCP.row({ "data-market": market }, FIELDS, NUMERIC), data: null, tick: null };
    rows.set(market, row);
    tbody.append(row.node);
    return row;
  }

  function lastTrade(row) {
    const fromBoard = row.data && row.data.last_trade_ms;
    if (row.tick && (!fromBoard || row.tick.ts >= fromBoard)) return { price: row.tick.price, ms: row.tick.ts };
    return { price: row.data ? row.data.last_price : null, ms: fromBoard || null };
  }

  function paint(market) {
    const row = rows.get(market);
    const data = row.data || { exchange: market.split(":")[0], symbol: market.split(":").slice(1).join(":") };
    const last = lastTrade(row);
    const cells = row.cells;
    if (!cells.market.firstChild) {
      const href = `/markets/${encodeURIComponent(data.exchange)}/${encodeURIComponent(data.symbol)}/`;
      cells.market.append(TCP.element("a", { href, text: `${data.exchange} ${data.symbol}` }));
    }
    cells.last_price.textContent = TCP.decimal(last.price);
    const change = data.change_percent;
    cells.change.textContent = change === null || change === undefined ? "–" :
      `${TCP.decimal(data.change_24h)} (${change}%)`;
    cells.change.className = "num " + (change > 0 ? "up" : change < 0 ? "down" : "");
    cells.high_24h.textContent = TCP.decimal(data.high_24h);
    cells.low_24h.textContent = TCP.decimal(data.low_24h);
    cells.volume_24h.textContent = TCP.decimal(data.volume_24h);
    cells.trades_per_minute.textContent = TCP.text(data.trades_per_minute);
    cells.last_trade.replaceChildren(TCP.time(last.ms), TCP.element("span", { class: "age" }));
    const collector = collectors.get(market);
    cells.state.textContent = collector ? collector.status : "–";
    cells.health.textContent = !collector ? "–" : collector.is_healthy ? "healthy" :
      (collector.issues.join("; ") || "unhealthy");
    cells.last_error.textContent = collector ? TCP.text(collector.statistics.last_error) : "–";
    cells.last_error.title = cells.last_error.textContent;
    row.node.classList.toggle("unhealthy", Boolean(collector && !collector.is_healthy));
    row.node.classList.toggle("disabled", data.enabled === false);
    age(row);
  }

  function age(row) {
    const last = lastTrade(row);
    const collector = collectors.get(row.node.dataset.market);
    const limit = (collector && collector.health.max_silence_duration) || DEFAULT_SILENCE;
    const seconds = last.ms ? (Date.now() - last.ms) / 1000 : null;
    const span = row.cells.last_trade.querySelector(".age");
    if (span) span.textContent = seconds === null ? "" : ` (${TCP.duration(seconds)} ago)`;
    const wanted = !row.data || row.data.enabled !== false;
    row.node.classList.toggle("stale", wanted && (seconds === null || seconds > limit));
  }

  function showBoard(board) {
    document.getElementById("board-empty").hidden = board.rows.length > 0;
    const seen = new Set();
    for (const data of board.rows) {
      const row = rowFor(data.market);
      row.data = data;
      seen.add(data.market);
      paint(data.market);
    }
    for (const [market, row] of rows) {
      if (!seen.has(market)) {
        row.node.remove();
        rows.delete(market);
      }
    }
    tbody.dataset.updatedMs = board.at_ms;
  }

  function showCollectors(snapshot) {
    collectors = new Map(snapshot.collectors.map((c) => [c.name, c]));
    const note = document.getElementById("collectors-unavailable");
    note.hidden = !snapshot.unavailable;
    note.textContent = snapshot.unavailable ? `Collector state: ${snapshot.unavailable}` : "";
    for (const market of rows.keys()) paint(market);
  }

  function showTick(tick) {
    const row = rows.get(tick.market);
    if (!row) return;
    const changed = !row.tick || row.tick.price !== tick.price;
    row.tick = tick;
    paint(tick.market);
    if (!changed) return;
    row.cells.last_price.classList.remove("flash");
    void row.cells.last_price.offsetWidth; // restart the animation
    row.cells.last_price.classList.add("flash");
  }

  showCollectors(initial.collectors);
  showBoard(initial.board);
  performance.mark("tcp:board-rendered"); // for the benchmark's first paint
  setInterval(() => rows.forEach(age), 1000);
  TCP.connect(script.dataset.stream, { board: showBoard, collectors: showCollectors, tick: showTick });
})();
